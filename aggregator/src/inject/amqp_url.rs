//! The app's AMQP URL, split for the tap: the broker's scheme, host and port become the sidecar's
//! `--tap-upstream`, and the app keeps its own URL (user, password, vhost and query untouched)
//! with the authority replaced by the tap's loopback address. `amqps://` becomes `amqp://` for the
//! app (the hop to the tap never leaves the pod) and stays `amqps://` upstream. Errors never echo
//! the URL: it usually carries a password.

/// Where the tap listens in every injected pod (the sidecar's `DWELL_TAP_LISTEN`).
pub const TAP_LISTEN: &str = "127.0.0.1:5672";

/// A URL split for the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// `amqp[s]://host:port`, for `--tap-upstream`.
    pub upstream: String,
    /// The app's URL on the tap: `amqp://[userinfo@]127.0.0.1:5672[/vhost][?query]`.
    pub app_url: String,
}

/// Why a URL cannot be split (no part of the URL is quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `amqp://` or `amqps://`.
    #[error("is not an amqp:// or amqps:// URL")]
    Scheme,
    /// No host, or one the injector cannot know (`$(VAR)` expansion).
    #[error("has no literal host (a $(VAR) host is only known at run time)")]
    Host,
    /// A port that is not 1–65535.
    #[error("has a port that is not a number from 1 to 65535")]
    Port,
    /// Already the tap's address: the real broker is unknown.
    #[error(
        "already points at the tap on 127.0.0.1:5672; name the broker with dwell.io/tap-upstream"
    )]
    Loopback,
}

/// Splits `url` (see the module doc).
pub fn split(url: &str) -> Result<Split, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::Scheme)?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "amqp" => (false, 5672),
        "amqps" => (true, 5671),
        _ => return Err(UrlError::Scheme),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    let (host, port) = host_port(hostport, default_port)?;
    if is_loopback(&host) && port == 5672 {
        return Err(UrlError::Loopback);
    }
    let scheme_out = if tls { "amqps" } else { "amqp" };
    let upstream = if host.contains(':') {
        format!("{scheme_out}://[{host}]:{port}")
    } else {
        format!("{scheme_out}://{host}:{port}")
    };
    let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Ok(Split {
        upstream,
        app_url: format!("amqp://{user}{TAP_LISTEN}{tail}"),
    })
}

fn host_port(hostport: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::Host)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(UrlError::Port)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.contains(['$', '(', ')', ' ', '%']) {
        return Err(UrlError::Host);
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(UrlError::Port),
        },
    };
    Ok((host.to_owned(), port))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, String) {
        let s = split(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (s.upstream, s.app_url)
    }

    #[test]
    fn credentials_vhost_and_query_stay_with_the_app() {
        assert_eq!(
            ok("amqp://binder:s3cr%40t@rabbitmq.rabbitmq.svc:5672/%2f"),
            (
                "amqp://rabbitmq.rabbitmq.svc:5672".into(),
                "amqp://binder:s3cr%40t@127.0.0.1:5672/%2f".into()
            )
        );
        assert_eq!(
            ok("amqp://rabbit"),
            ("amqp://rabbit:5672".into(), "amqp://127.0.0.1:5672".into())
        );
        assert_eq!(
            ok("amqp://u:p@rabbit/orders?heartbeat=30"),
            (
                "amqp://rabbit:5672".into(),
                "amqp://u:p@127.0.0.1:5672/orders?heartbeat=30".into()
            )
        );
        // $(VAR) in the credentials is expanded by the kubelet later, and still works.
        assert_eq!(
            ok("amqp://$(AMQP_USER):$(AMQP_PASS)@rabbit:5672/").1,
            "amqp://$(AMQP_USER):$(AMQP_PASS)@127.0.0.1:5672/"
        );
    }

    #[test]
    fn tls_stays_upstream_and_the_loopback_hop_is_plain() {
        assert_eq!(
            ok("AMQPS://u:p@broker.example.com/prod"),
            (
                "amqps://broker.example.com:5671".into(),
                "amqp://u:p@127.0.0.1:5672/prod".into()
            )
        );
        assert_eq!(ok("amqp://[fd00::1]:5673/").0, "amqp://[fd00::1]:5673");
    }

    #[test]
    fn unusable_urls_are_refused_without_echoing_them() {
        for (url, want) in [
            ("http://u:s3cret@rabbit", UrlError::Scheme),
            ("s3cret", UrlError::Scheme),
            ("amqp://u:s3cret@:5672/", UrlError::Host),
            ("amqp://u:s3cret@$(HOST):5672/", UrlError::Host),
            ("amqp://u:s3cret@rabbit:99999/", UrlError::Port),
            ("amqp://u:s3cret@rabbit:x/", UrlError::Port),
            ("amqp://u:s3cret@127.0.0.1:5672/", UrlError::Loopback),
            ("amqp://u:s3cret@localhost/", UrlError::Loopback),
        ] {
            let err = split(url).expect_err(url);
            assert_eq!(err, want, "{url}");
            assert!(!err.to_string().contains("s3cret"));
        }
        // A loopback broker on another port is a real broker (e.g. a second sidecar).
        assert!(split("amqp://127.0.0.1:5673").is_ok());
    }
}
