//! Names: Higress's Envoy cluster names of Service ports, and Kubernetes name rules.

use sha2::{Digest, Sha256};

/// Higress's (Istio's) Envoy cluster name of a Kubernetes Service port, without subset:
/// `outbound|<port>||<service>.<namespace>.svc.cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName {
    pub port: u16,
    pub service: String,
    pub namespace: String,
}

const SUFFIX: &str = ".svc.cluster.local";

impl ClusterName {
    /// The Service port a cluster name names, if it is one (not a subset, `.dns` or `.static`).
    pub fn parse(s: &str) -> Option<ClusterName> {
        let rest = s.strip_prefix("outbound|")?;
        let (port, rest) = rest.split_once('|')?;
        let host = rest.strip_prefix('|')?;
        let (service, namespace) = host.strip_suffix(SUFFIX)?.split_once('.')?;
        let valid = |s: &str| is_label(s) && !s.contains('.');
        let port = port.parse().ok().filter(|p| *p != 0)?;
        (valid(service) && valid(namespace)).then(|| ClusterName {
            port,
            service: service.to_string(),
            namespace: namespace.to_string(),
        })
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ClusterName {
            port,
            service,
            namespace,
        } = self;
        write!(f, "outbound|{port}||{service}.{namespace}{SUFFIX}")
    }
}

/// An RFC 1123 label (≤ 63 lowercase alphanumerics or `-`, alphanumeric at both ends):
/// namespaces and, stricter below, Service names.
pub fn is_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| ok(c) || c == '-')
        && s.starts_with(ok)
        && s.ends_with(ok)
}

/// A Service name: an RFC 1035 label (an RFC 1123 label starting with a letter).
pub fn is_service_name(s: &str) -> bool {
    is_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// An object name (RFC 1123 subdomain): Ingresses and EndpointSlices.
pub fn is_object_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// A label value: the text itself when it is one, else a hash of it (labels are for
/// selecting; the full text goes to an annotation).
pub fn label_value(s: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric();
    let valid = s.len() <= 63
        && s.chars().all(|c| ok(c) || "-_.".contains(c))
        && s.starts_with(ok)
        && s.ends_with(ok);
    if valid {
        return s.to_string();
    }
    let hash = Sha256::digest(s.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_parse_and_print_back() {
        let s = "outbound|80||shop-hz-a.default.svc.cluster.local";
        let c = ClusterName::parse(s).unwrap();
        assert_eq!(
            (c.port, &*c.service, &*c.namespace),
            (80, "shop-hz-a", "default")
        );
        assert_eq!(c.to_string(), s);
    }

    #[test]
    fn subsets_registries_and_bad_ports_are_no_service_clusters() {
        for s in [
            "outbound|80|hz-a|shop.default.svc.cluster.local",
            "outbound|80||shop.dns",
            "outbound|0||shop.default.svc.cluster.local",
            "outbound|x||shop.default.svc.cluster.local",
            "outbound|80||shop.svc.cluster.local",
            "outbound|80||Shop.default.svc.cluster.local",
            "inbound|80||shop.default.svc.cluster.local",
        ] {
            assert_eq!(ClusterName::parse(s), None, "{s}");
        }
    }

    #[test]
    fn names_follow_the_kubernetes_rules() {
        assert!(is_service_name("shop-hz-a"));
        assert!(!is_service_name("1shop"));
        assert!(!is_service_name(&"a".repeat(64)));
        assert!(is_object_name("shop.v1-x"));
        assert!(!is_object_name("shop_x"));
        assert_eq!(label_value("default.shop"), "default.shop");
        let long = label_value(&"a".repeat(70));
        assert!(long.starts_with("sha256-") && long.len() == 23, "{long}");
    }
}
