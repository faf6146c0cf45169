//! Binding a report to its sender: a verified identity names a namespace (and, for a token, a
//! pod), and every report on that stream must be about that namespace and pod. Checked on the
//! report's wire form, before validation, so a denied report (or goodbye) never touches the
//! window; two string comparisons per report.

/// Who a stream's reports may speak for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The one namespace.
    pub namespace: Box<str>,
    /// The one pod (`None`: any pod of the namespace, as a SPIFFE certificate binds).
    pub pod: Option<Box<str>>,
    /// When the credential stops being valid (ms since the epoch; `None`: while connected).
    pub expires_at_ms: Option<i64>,
    /// How it was proven (`token`, `certificate`), for logs.
    pub proof: &'static str,
}

/// Why a report was refused for its sender (a `PERMISSION_DENIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// Another namespace than the sender's.
    #[error("report.source.namespace is not the namespace of the caller's {0}")]
    Namespace(&'static str),
    /// Another pod than the sender's.
    #[error("report.source.pod is not the pod of the caller's {0}")]
    Pod(&'static str),
}

impl Denial {
    /// A bounded label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "namespace",
            Self::Pod(_) => "pod",
        }
    }
}

impl Identity {
    /// Whether a report about `namespace`/`pod` may come from this identity.
    pub fn permits(&self, namespace: &str, pod: &str) -> Result<(), Denial> {
        if *self.namespace != *namespace {
            return Err(Denial::Namespace(self.proof));
        }
        match &self.pod {
            Some(own) if **own != *pod => Err(Denial::Pod(self.proof)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_namespace_and_pod() {
        let token = Identity {
            namespace: "shop".into(),
            pod: Some("binder-0".into()),
            expires_at_ms: None,
            proof: "token",
        };
        assert_eq!(token.permits("shop", "binder-0"), Ok(()));
        assert_eq!(token.permits("shop", "binder-1"), Err(Denial::Pod("token")));
        assert_eq!(
            token.permits("bank", "binder-0"),
            Err(Denial::Namespace("token"))
        );
        let cert = Identity {
            pod: None,
            proof: "certificate",
            ..token
        };
        assert_eq!(cert.permits("shop", "anything"), Ok(()));
        assert_eq!(
            cert.permits("shopx", "binder-0").map_err(|d| d.reason()),
            Err("namespace")
        );
    }
}
