//! The AMQP URL: parsed once, its password never shown. `Display`, `Debug` and every error print
//! it as `amqp://user:***@host:port/vhost`; [`AmqpUrl::mask`] scrubs the password out of any text
//! a library hands back (an error message may echo what it was given).
use std::fmt;
use std::net::IpAddr;

use lapin::uri::{AMQPScheme, AMQPUri};

/// An `amqp://` or `amqps://` URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq)]
pub struct AmqpUrl {
    uri: AMQPUri,
    redacted: String,
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
    /// Parses and validates an `amqp://` or `amqps://` URL (surrounding whitespace, as a Secret
    /// file's trailing newline, is ignored).
    pub fn parse(raw: &str) -> Result<Self, AmqpUrlError> {
        let raw = raw.trim();
        let redacted = redact(raw);
        let refuse = |reason: String| AmqpUrlError {
            reason: scrub(&reason, raw, &redacted),
            redacted: redacted.clone(),
        };
        let mut uri: AMQPUri = raw.parse().map_err(refuse)?;
        // amq-protocol-uri takes the host from `Url::domain()`, which is None for an IP literal,
        // and then silently falls back to "localhost": `amqp://10.0.0.5/` would connect to the
        // local machine. Take an IP literal from the URL itself.
        if let Some(ip) = ip_host(raw) {
            uri.authority.host = ip.to_string();
        }
        Ok(Self { uri, redacted })
    }

    /// The virtual host the URL names (`/` for `%2f`).
    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    /// The same broker and credentials on another virtual host (AMQP binds a connection to one).
    pub fn with_vhost(&self, vhost: &str) -> Self {
        let mut uri = self.uri.clone();
        uri.vhost = vhost.to_owned();
        let redacted = match self.redacted.find("://") {
            Some(scheme) => {
                let rest = &self.redacted[scheme + 3..];
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let encoded = percent_encoding::utf8_percent_encode(vhost, VHOST).to_string();
                let query = rest[end..].find('?').map_or("", |q| &rest[end + q..]);
                format!("{}/{encoded}{query}", &self.redacted[..scheme + 3 + end])
            }
            None => self.redacted.clone(),
        };
        Self { uri, redacted }
    }

    /// Whether the connection is TLS (`amqps://`).
    pub fn is_tls(&self) -> bool {
        self.uri.scheme == AMQPScheme::AMQPS
    }

    /// The host to connect to (also the name the broker's certificate must carry).
    pub fn host(&self) -> &str {
        &self.uri.authority.host
    }

    /// The port (5672 for `amqp://`, 5671 for `amqps://` unless the URL names one).
    pub fn port(&self) -> u16 {
        self.uri.authority.port
    }

    /// The user name (not secret).
    pub fn username(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    /// The password, for the management API's basic authentication in this crate only.
    pub(crate) fn password(&self) -> &str {
        &self.uri.authority.userinfo.password
    }

    /// The parsed URI, to connect with.
    pub(crate) fn uri(&self) -> &AMQPUri {
        &self.uri
    }

    /// `text` with every occurrence of the password replaced by `***`, for messages built from
    /// what a library reported.
    pub fn mask(&self, text: &str) -> String {
        let password = self.password();
        if password.is_empty() {
            return text.to_owned();
        }
        let encoded = percent_encoding::utf8_percent_encode(password, USERINFO).to_string();
        text.replace(password, "***").replace(&encoded, "***")
    }
}

/// What `AMQPUri`'s Display encodes in a vhost: everything but unreserved characters.
const VHOST: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a URL's userinfo may carry percent-encoded (to also mask the encoded form).
const USERINFO: &percent_encoding::AsciiSet = VHOST;

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
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
    format!("{}{}{}", &raw[..start], masked, &raw[start + at..])
}

/// `reason` with the raw URL and its password (if any) masked.
fn scrub(reason: &str, raw: &str, redacted: &str) -> String {
    let reason = reason.replace(raw, redacted);
    match password_of(raw) {
        Some(p) if !p.is_empty() => reason.replace(p, "***"),
        _ => reason,
    }
}

/// The password part of the URL's userinfo, as written.
fn password_of(raw: &str) -> Option<&str> {
    let rest = &raw[raw.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, p)| p)
}

/// The host of the URL when it is an IP literal (`10.0.0.5`, `[::1]`).
fn ip_host(raw: &str) -> Option<IpAddr> {
    let rest = &raw[raw.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &v6[..v6.find(']')?],
        None => host_port.split(':').next()?,
    };
    host.parse().ok()
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
        let url = AmqpUrl::parse("amqp://guest:s3cret@rabbit:5672/%2f\n").unwrap();
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert_eq!(url.vhost(), "/");
        assert_eq!(url.mask("login s3cret refused"), "login *** refused");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in [
            "http://u:s3cret@h/",
            "amqp://u:s3cret@[::1/",
            "u:s3cret",
            "amqp://u:s3cret@h:99999/",
        ] {
            let err = AmqpUrl::parse(bad).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn ip_hosts_are_kept_not_replaced_by_localhost() {
        let url = AmqpUrl::parse("amqp://u:p@10.1.2.3:5673/%2f").unwrap();
        assert_eq!((url.host(), url.port()), ("10.1.2.3", 5673));
        let url = AmqpUrl::parse("amqps://u:p@[::1]/v").unwrap();
        assert_eq!((url.host(), url.port(), url.is_tls()), ("::1", 5671, true));
        let url = AmqpUrl::parse("amqp://u:p@rabbit.ns.svc/v").unwrap();
        assert_eq!((url.host(), url.is_tls()), ("rabbit.ns.svc", false));
    }

    #[test]
    fn another_vhost_keeps_broker_and_credentials() {
        let url = AmqpUrl::parse("amqp://u:s3cret@rabbit:5672/%2f?heartbeat=10").unwrap();
        let other = url.with_vhost("team a/x");
        assert_eq!(other.vhost(), "team a/x");
        assert_eq!(other.uri().authority, url.uri().authority);
        assert_eq!(
            other.to_string(),
            "amqp://u:***@rabbit:5672/team%20a%2Fx?heartbeat=10"
        );
        assert_eq!(
            url.with_vhost("/").to_string(),
            "amqp://u:***@rabbit:5672/%2F?heartbeat=10"
        );
    }
}
