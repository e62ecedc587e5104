//! Gateway API in the fleet: which `GatewayClass`es and `Gateway`s are ours, which listeners
//! are usable, which `HTTPRoute`s attach to which listeners with which hostnames, whether
//! their backend references resolve, and the conditions the spec asks for on each of them.
//!
//! Pure: objects in, [`Outcome`] out; no I/O and no clocks (the caller writes status with
//! its own timestamps). The objects are `gateway-api` crate types, read as serde data.
//!
//! Stages: [`listeners`] (a Gateway and its listeners), [`parents`] (a route's parentRefs
//! against them), [`refs`] (a route's backendRefs, ReferenceGrants), [`hostnames`] (the
//! spec's hostname intersection).

pub mod apply;
pub mod filters;
pub mod hostnames;
pub mod listeners;
pub mod parents;
pub mod refs;
pub mod status;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteParentRefs};
use gateway_api::apis::standard::referencegrants::ReferenceGrant;

pub use listeners::{GatewayOutcome, ListenerOutcome};
pub use parents::{Attachment, ParentOutcome};
pub use refs::{BackendKind, Backends, FleetBackends};

/// The `controllerName` of fleetgate's GatewayClasses.
pub const CONTROLLER_NAME: &str = "fleetgate.io/gateway-controller";
/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn of(meta: &k8s_openapi_gw::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One status condition, as the spec names its type and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: impl ToString,
        status: bool,
        reason: impl ToString,
        message: impl Into<String>,
    ) -> Self {
        Cond {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// The fleet's Gateway API objects, and the MCS `ServiceImport`s its routes may name, as a
/// dump or the watches hold them.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub http_routes: Vec<HttpRoute>,
    pub grants: Vec<ReferenceGrant>,
    pub service_imports: Vec<kube::api::DynamicObject>,
}

/// What the controller sees of the fleet cluster.
pub struct Inputs<'a> {
    pub classes: &'a [GatewayClass],
    pub gateways: &'a [Gateway],
    pub routes: &'a [HttpRoute],
    pub grants: &'a [ReferenceGrant],
    /// Namespace labels (the automatic `kubernetes.io/metadata.name` is added for any
    /// namespace, listed or not).
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The address traffic reaches the gateway at (`--status-address`), if known.
    pub address: Option<&'a str>,
}

/// A route's evaluation: per parent of ours, its conditions; where it attached.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOutcome {
    pub route: ObjKey,
    pub parents: Vec<ParentOutcome>,
    pub attachments: Vec<Attachment>,
}

/// Everything the spec asks the controller to say, and what attaches where.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// GatewayClasses of ours, by name: their `Accepted` condition.
    pub classes: BTreeMap<String, Cond>,
    pub gateways: Vec<GatewayOutcome>,
    /// Shared, so a derivation that remembers them need not copy them.
    pub routes: Vec<Arc<RouteOutcome>>,
}

/// Evaluate the fleet's Gateway API objects.
pub fn evaluate(inputs: &Inputs<'_>, backends: &impl Backends) -> Outcome {
    let (classes, gateways) = gateways(inputs);
    let mut routes: Vec<_> = (inputs.routes.iter())
        .filter_map(|r| route_outcome(r, inputs, &gateways, backends))
        .map(Arc::new)
        .collect();
    routes.sort_by(|a, b| a.route.cmp(&b.route));
    assemble(classes, gateways, routes)
}

/// The GatewayClasses of ours (by name: their `Accepted` condition) and the Gateways of an
/// accepted one, sorted by key, before any route attaches.
pub fn gateways(inputs: &Inputs<'_>) -> (BTreeMap<String, Cond>, Vec<GatewayOutcome>) {
    let classes: BTreeMap<String, Cond> = inputs
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == CONTROLLER_NAME)
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                listeners::class_accepted(c),
            )
        })
        .collect();
    let mut gateways: Vec<GatewayOutcome> = inputs
        .gateways
        .iter()
        .filter(|g| {
            classes
                .get(&g.spec.gateway_class_name)
                .is_some_and(|c| c.status)
        })
        .map(|g| listeners::evaluate(g, inputs.address))
        .collect();
    gateways.sort_by(|a, b| a.key.cmp(&b.key));
    (classes, gateways)
}

/// The outcome of these classes, Gateways and route outcomes (sorted by key), each listener
/// with the number of routes attached to it.
pub fn assemble(
    classes: BTreeMap<String, Cond>,
    mut gateways: Vec<GatewayOutcome>,
    routes: Vec<Arc<RouteOutcome>>,
) -> Outcome {
    listeners::count_attached(&mut gateways, &routes);
    Outcome {
        classes,
        gateways,
        routes,
    }
}

/// A route's outcome, `None` when none of its parents is ours (their controllers speak for it).
pub fn route_outcome(
    route: &HttpRoute,
    inputs: &Inputs<'_>,
    gateways: &[GatewayOutcome],
    backends: &impl Backends,
) -> Option<RouteOutcome> {
    let key = ObjKey::of(&route.metadata);
    let ours: Vec<_> = (route.spec.parent_refs.iter().flatten())
        .filter_map(|p| parents::ours(p, &key, gateways).map(|g| (p, g)))
        .collect();
    if ours.is_empty() {
        return None;
    }
    let resolved = refs::resolve(route, &key, inputs.grants, backends);
    let mut parents = Vec::new();
    let mut attachments = Vec::new();
    for (parent, gateway) in ours {
        let (accepted, attached) = parents::attach(route, &key, parent, gateway, inputs.namespaces);
        attachments.extend(attached);
        parents.push(ParentOutcome {
            parent_ref: parent.clone(),
            accepted,
            resolved_refs: resolved.clone(),
            partially_invalid: None,
        });
    }
    Some(RouteOutcome {
        route: key,
        parents,
        attachments,
    })
}

/// Rules of one HTTPRoute that fleetgate cannot serve as written (they answer 500), and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleProblems {
    /// Rules the route has.
    pub rules: usize,
    /// Indexes of the rules concerned.
    pub failed: Vec<usize>,
    pub messages: Vec<String>,
}

/// Say so in the routes' conditions, reason `UnsupportedValue`: `PartiallyInvalid` when some
/// rules are served, `Accepted=False` when none is.
pub fn mark_unsupported(outcome: &mut Outcome, invalid: &BTreeMap<ObjKey, RuleProblems>) {
    for r in &mut outcome.routes {
        let Some(p) = invalid.get(&r.route) else {
            continue;
        };
        let r = Arc::make_mut(r);
        let msg = p.messages.join("; ");
        let reason = parents::RouteReason::UnsupportedValue;
        for parent in r.parents.iter_mut().filter(|p| p.accepted.status) {
            if p.failed.len() >= p.rules {
                parent.accepted = Cond::new("Accepted", false, reason, msg.clone());
            } else {
                let c = Cond::new("PartiallyInvalid", true, reason, msg.clone());
                parent.partially_invalid = Some(c);
            }
        }
    }
}

/// The group and kind of a parentRef, defaulted as the spec says.
pub fn parent_kind(p: &HttpRouteParentRefs) -> (&str, &str) {
    (
        p.group.as_deref().unwrap_or(GROUP),
        p.kind.as_deref().unwrap_or("Gateway"),
    )
}
