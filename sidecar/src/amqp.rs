//! The AMQP URL (whose password must never reach a log line) and opening the sidecar's own
//! broker connections, one per source, so a peek error can never disturb the stats source.

use std::fmt;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// An AMQP URL whose `Debug` and `Display` hide the password.
#[derive(Clone)]
pub struct AmqpUrl {
    raw: String,
    vhost: String,
}

/// Why an AMQP URL was refused. Neither the message nor the fields ever hold the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid AMQP URL {redacted}: {reason}")]
pub struct AmqpUrlError {
    /// The URL with its password masked.
    pub redacted: String,
    /// The parser's complaint, with any echo of the URL masked too.
    pub reason: String,
}

impl AmqpUrl {
    /// Parses and validates an `amqp://` or `amqps://` URL.
    pub fn parse(raw: &str) -> Result<Self, AmqpUrlError> {
        let redacted = redact(raw);
        let uri: AMQPUri = raw.parse().map_err(|e: String| AmqpUrlError {
            // The parser may echo the whole URL back; never let it carry the password out.
            reason: e.replace(raw, &redacted),
            redacted: redacted.clone(),
        })?;
        Ok(Self {
            raw: raw.to_owned(),
            vhost: uri.vhost,
        })
    }

    /// The virtual host named by the URL.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// Connects, naming the connection so operators can tell it apart in the management UI.
    pub async fn connect(&self, name: &str) -> Result<Connection, lapin::Error> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        Connection::connect(&self.raw, props).await
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

/// Replaces the password of `scheme://user:password@host/…` with `***`.
pub fn redact(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        // Not URL-shaped: it could be anything, so show nothing of it.
        return "<unparsable URL>".to_owned();
    };
    let rest = &raw[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return raw.to_owned();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_owned()
    };
    format!(
        "{}{}{}",
        &raw[..start],
        masked,
        &raw[start + at..] // from '@' on
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:s3cret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(redact("amqp://rabbit/%2f"), "amqp://rabbit/%2f");
        assert_eq!(redact("amqp://u@rabbit"), "amqp://u@rabbit");
        assert_eq!(redact("amqp://u:p@ss@rabbit/x"), "amqp://u:***@rabbit/x");
        assert_eq!(redact("garbage"), "<unparsable URL>");
        let url = AmqpUrl::parse("amqp://guest:s3cret@rabbit:5672/%2f").unwrap();
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert_eq!(url.vhost(), "/");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in ["http://u:s3cret@h/", "amqp://u:s3cret@[::1/", "u:s3cret"] {
            let err = AmqpUrl::parse(bad).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
        }
    }
}
