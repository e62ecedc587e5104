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

/// The member clusters a ServiceImport imports from (`status.clusters[].cluster`, MCS
/// v1alpha1 and v1beta1 alike).
pub fn import_clusters(imports: &[DynamicObject], namespace: &str, name: &str) -> Vec<String> {
    let Some(i) = imports.iter().find(|i| {
        i.metadata.namespace.as_deref() == Some(namespace)
            && i.metadata.name.as_deref() == Some(name)
    }) else {
        return Vec::new();
    };
    let clusters = i
        .data
        .pointer("/status/clusters")
        .and_then(|c| c.as_array());
    clusters
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("cluster")?.as_str().map(str::to_string))
        .collect()
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

/// A backendRef that resolved: what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: BackendKind,
    pub namespace: String,
    pub name: String,
}

/// One backend reference (`group`, `kind`, `namespace`, `name` as written) of route `key`:
/// what it names, or why it does not resolve.
pub fn resolve_one(
    (group, kind, namespace, name): (Option<&str>, Option<&str>, Option<&str>, &str),
    key: &ObjKey,
    grants: &[ReferenceGrant],
    backends: &impl Backends,
) -> Result<Resolved, (RouteReason, String)> {
    let (group, kind) = (group.unwrap_or(""), kind.unwrap_or("Service"));
    let namespace = namespace.unwrap_or(&key.namespace);
    let what = format!("{kind} {namespace}/{name}");
    let Some(k) = BackendKind::of(group, kind) else {
        return Err((
            RouteReason::InvalidKind,
            format!("{what}: group {group:?} kind {kind} is not a backend fleetgate serves"),
        ));
    };
    if namespace != key.namespace && !granted(grants, &key.namespace, namespace, k, name) {
        return Err((
            RouteReason::RefNotPermitted,
            format!("{what}: no ReferenceGrant in {namespace} allows it"),
        ));
    }
    if !backends.exists(k, namespace, name) {
        return Err((
            RouteReason::BackendNotFound,
            format!("{what}: not found in any member cluster"),
        ));
    }
    Ok(Resolved {
        kind: k,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// The route's `ResolvedRefs` condition.
pub fn resolve(
    route: &HttpRoute,
    key: &ObjKey,
    grants: &[ReferenceGrant],
    backends: &impl Backends,
) -> Cond {
    let refs = route
        .spec
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.backend_refs.iter().flatten());
    let failures: Vec<(RouteReason, String)> = refs
        .filter_map(|b| {
            let r = (
                b.group.as_deref(),
                b.kind.as_deref(),
                b.namespace.as_deref(),
                &*b.name,
            );
            resolve_one(r, key, grants, backends).err()
        })
        .collect();
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
