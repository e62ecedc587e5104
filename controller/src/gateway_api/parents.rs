//! A route's parentRefs against the Gateways of ours: which listeners it attaches to, with
//! which hostnames, and its `Accepted` condition per parent (the spec's reasons, in its order
//! of checks: no such listener, not allowed by the listeners, no intersecting hostname).

use std::collections::BTreeMap;

use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteParentRefs};

use super::listeners::{allows_namespace, GatewayOutcome};
use super::{hostnames, parent_kind, Cond, ObjKey, GROUP};

/// The route condition reasons the spec names (the crate has constants for Gateways only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    Accepted,
    NoMatchingParent,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    UnsupportedValue,
    ResolvedRefs,
    InvalidKind,
    RefNotPermitted,
    BackendNotFound,
}

impl std::fmt::Display for RouteReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A route attached to one listener, serving these hostnames (`*`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub gateway: ObjKey,
    pub listener: String,
    pub port: i32,
    pub hostnames: Vec<String>,
}

impl std::fmt::Display for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (g, l, port) = (&self.gateway, &self.listener, self.port);
        write!(
            f,
            "{g} listener {l} (port {port}): {}",
            self.hostnames.join(", ")
        )
    }
}

/// A route's conditions for one parent of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentOutcome {
    pub parent_ref: HttpRouteParentRefs,
    pub accepted: Cond,
    pub resolved_refs: Cond,
    /// Set when some of the route's rules cannot be served as written.
    pub partially_invalid: Option<Cond>,
}

/// The Gateway of ours a parentRef names, if any.
pub fn ours<'g>(
    p: &HttpRouteParentRefs,
    route: &ObjKey,
    gateways: &'g [GatewayOutcome],
) -> Option<&'g GatewayOutcome> {
    if parent_kind(p) != (GROUP, "Gateway") {
        return None;
    }
    let namespace = p.namespace.as_deref().unwrap_or(&route.namespace);
    gateways
        .iter()
        .find(|g| g.key.namespace == namespace && g.key.name == p.name)
}

fn accepted(reason: RouteReason, message: impl Into<String>) -> Cond {
    Cond::new("Accepted", reason == RouteReason::Accepted, reason, message)
}

/// Attach `route` to the listeners of `gateway` that `parent` selects.
pub fn attach(
    route: &HttpRoute,
    key: &ObjKey,
    parent: &HttpRouteParentRefs,
    gateway: &GatewayOutcome,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> (Cond, Vec<Attachment>) {
    let selected: Vec<_> = (gateway.listeners.iter())
        .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|l| parent.port.is_none_or(|p| p == l.port))
        .filter(|l| l.usable())
        .collect();
    if selected.is_empty() {
        let msg = format!(
            "no valid listener of {} matches this parentRef",
            gateway.key
        );
        return (accepted(RouteReason::NoMatchingParent, msg), Vec::new());
    }
    let allowed: Vec<_> = (selected.into_iter())
        .filter(|l| {
            l.supported_kinds
                .iter()
                .any(|(g, k)| g == GROUP && k == "HTTPRoute")
        })
        .filter(|l| allows_namespace(l, &gateway.key.namespace, &key.namespace, namespaces))
        .collect();
    if allowed.is_empty() {
        let msg = format!(
            "the listeners of {} do not allow HTTPRoutes from namespace {}",
            gateway.key, key.namespace
        );
        return (
            accepted(RouteReason::NotAllowedByListeners, msg),
            Vec::new(),
        );
    }
    let route_hosts = route.spec.hostnames.clone().unwrap_or_default();
    let attached: Vec<Attachment> = (allowed.into_iter())
        .map(|l| Attachment {
            gateway: gateway.key.clone(),
            listener: l.name.clone(),
            port: l.port,
            hostnames: hostnames::effective(l.hostname.as_deref(), &route_hosts),
        })
        .filter(|a| !a.hostnames.is_empty())
        .collect();
    if attached.is_empty() {
        let msg = format!(
            "no hostname of the route intersects a listener hostname of {}",
            gateway.key
        );
        return (
            accepted(RouteReason::NoMatchingListenerHostname, msg),
            Vec::new(),
        );
    }
    let names: Vec<&str> = attached.iter().map(|a| a.listener.as_str()).collect();
    let msg = format!(
        "attached to {} listener(s) {}",
        gateway.key,
        names.join(", ")
    );
    (accepted(RouteReason::Accepted, msg), attached)
}
