//! The namespace a client certificate names: a SPIFFE-style URI SAN
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` (the form Istio, Linkerd and
//! cert-manager's csi-driver-spiffe issue). It binds the namespace only: a workload certificate
//! names a service account, which every pod of it shares, so it cannot bind the pod.

/// The namespace of the first URI SAN of the SPIFFE form in `uris`, if the trust domain is
/// `trust_domain` (any, when `None`).
pub fn namespace<'a>(
    uris: impl IntoIterator<Item = &'a str>,
    trust_domain: Option<&str>,
) -> Option<&'a str> {
    uris.into_iter().find_map(|uri| {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/')?;
        if trust_domain.is_some_and(|td| td != domain) {
            return None;
        }
        match path.split('/').collect::<Vec<_>>()[..] {
            ["ns", ns, "sa", sa] if dns_label(ns) && !sa.is_empty() => Some(ns),
            _ => None,
        }
    })
}

/// A Kubernetes namespace name (RFC 1123 label).
fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_namespace_of_a_spiffe_id() {
        let id = ["https://x", "spiffe://cluster.local/ns/shop/sa/binder"];
        assert_eq!(namespace(id, None), Some("shop"));
        assert_eq!(namespace(id, Some("cluster.local")), Some("shop"));
        assert_eq!(namespace(id, Some("other.domain")), None);
        for bad in [
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns/Shop/sa/b",
            "spiffe://cluster.local/ns/shop/sa/b/extra",
            "spiffe://cluster.local/sa/b/ns/shop",
            "spiffe://cluster.local",
        ] {
            assert_eq!(namespace([bad], None), None, "{bad}");
        }
    }
}
