//! A route's backendRefs: a kind fleetgate can serve (a core `Service`, or an MCS
//! `ServiceImport`), a cross-namespace reference permitted by a `ReferenceGrant` in the
//! target namespace, a backend that exists in the fleet. One `ResolvedRefs` condition per
//! route; its message names every reference that failed.

use gateway_api::apis::standard::httproutes::HttpRoute;
use gateway_api::apis::standard::referencegrants::ReferenceGrant;

use kube::api::DynamicObject;

use super::parents::RouteReason;
use super::{Cond, ObjKey, GROUP};
use crate::derive::MemberSnapshot;

/// The MCS API group of `ServiceImport`.
pub const MCS_GROUP: &str = "multicluster.x-k8s.io";

/// What a backendRef names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A Service of the same name in every member (the fleet model).
    Service,
    /// An MCS ServiceImport: the clusters it imports from.
    ServiceImport,
}

impl BackendKind {
    fn of(group: &str, kind: &str) -> Option<BackendKind> {
        match (group, kind) {
            ("", "Service") => Some(BackendKind::Service),
            (MCS_GROUP, "ServiceImport") => Some(BackendKind::ServiceImport),
            _ => None,
        }
    }

    fn group_kind(self) -> (&'static str, &'static str) {
        match self {
            BackendKind::Service => ("", "Service"),
            BackendKind::ServiceImport => (MCS_GROUP, "ServiceImport"),
        }
    }
}

/// Whether a backend exists anywhere fleetgate looks (a Service in some member, an import).
pub trait Backends {
    fn exists(&self, kind: BackendKind, namespace: &str, name: &str) -> bool;
}

/// The fleet as backends: a Service exists if some member has it; a ServiceImport if the
/// fleet has the import.
pub struct FleetBackends<'a> {
    pub members: &'a [MemberSnapshot],
    pub imports: &'a [DynamicObject],
}

impl Backends for FleetBackends<'_> {
    fn exists(&self, kind: BackendKind, namespace: &str, name: &str) -> bool {
        match kind {
            BackendKind::Service => {
                let key = (namespace.to_string(), name.to_string());
                self.members.iter().any(|m| m.index.service(&key).is_some())
            }
            BackendKind::ServiceImport => self.imports.iter().any(|i| {
                i.metadata.namespace.as_deref() == Some(namespace)
                    && i.metadata.name.as_deref() == Some(name)
            }),
        }
    }
}

/// A `ReferenceGrant` in `to_ns` lets HTTPRoutes of `from_ns` reference `name` of `kind`.
fn granted(
    grants: &[ReferenceGrant],
    from_ns: &str,
    to_ns: &str,
    kind: BackendKind,
    name: &str,
) -> bool {
    let (group, kind) = kind.group_kind();
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to_ns))
        .any(|g| {
            let from = g
                .spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == "HTTPRoute" && f.namespace == from_ns);
            let to = (g.spec.to.iter()).any(|t| {
                t.group == group && t.kind == kind && t.name.as_deref().is_none_or(|n| n == name)
            });
            from && to
        })
}

/// The route's `ResolvedRefs` condition.
pub fn resolve(
    route: &HttpRoute,
    key: &ObjKey,
    grants: &[ReferenceGrant],
    backends: &impl Backends,
) -> Cond {
    let mut failures: Vec<(RouteReason, String)> = Vec::new();
    let refs = route
        .spec
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.backend_refs.iter().flatten());
    for b in refs {
        let (group, kind) = (
            b.group.as_deref().unwrap_or(""),
            b.kind.as_deref().unwrap_or("Service"),
        );
        let namespace = b.namespace.as_deref().unwrap_or(&key.namespace);
        let what = format!("{kind} {namespace}/{}", b.name);
        let failure = match BackendKind::of(group, kind) {
            None => Some((
                RouteReason::InvalidKind,
                format!("{what}: group {group:?} kind {kind} is not a backend fleetgate serves"),
            )),
            Some(k)
                if namespace != key.namespace
                    && !granted(grants, &key.namespace, namespace, k, &b.name) =>
            {
                Some((
                    RouteReason::RefNotPermitted,
                    format!("{what}: no ReferenceGrant in {namespace} allows it"),
                ))
            }
            Some(k) if !backends.exists(k, namespace, &b.name) => Some((
                RouteReason::BackendNotFound,
                format!("{what}: not found in any member cluster"),
            )),
            Some(_) => None,
        };
        failures.extend(failure);
    }
    // One reason: the most fundamental failure (kind, then permission, then existence).
    let order = [
        RouteReason::InvalidKind,
        RouteReason::RefNotPermitted,
        RouteReason::BackendNotFound,
    ];
    match order.iter().find(|r| failures.iter().any(|(f, _)| f == *r)) {
        None => Cond::new(
            "ResolvedRefs",
            true,
            RouteReason::ResolvedRefs,
            "every backend reference resolved",
        ),
        Some(reason) => {
            let msgs: Vec<&str> = failures.iter().map(|(_, m)| m.as_str()).collect();
            Cond::new("ResolvedRefs", false, reason, msgs.join("; "))
        }
    }
}
