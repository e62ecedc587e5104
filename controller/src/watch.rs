//! Watches: fleet Ingresses, IngressClasses and Argo CD cluster Secrets, and each member's
//! EndpointSlices, fed into the [`crate::store`].

use k8s_openapi::api::networking::v1::IngressClass;

/// IngressClass annotation that makes a class the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Is this IngressClass marked as the cluster default?
pub fn is_default_class(c: &IngressClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}
