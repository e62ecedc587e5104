//! The Gateway API evaluation, remembered per HTTPRoute: a route's outcome (where it attaches,
//! its conditions) is kept while everything it read stays the same, so a change of endpoints
//! evaluates only the routes that name a changed Service.
//!
//! A route's outcome reads the route itself, the Gateways of ours (as evaluated, with their
//! listeners), the labels of its own namespace, the ReferenceGrants and ServiceImports (the
//! caller forgets the memory when those change) and whether the Services it names exist.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ::gateway_api::apis::standard::httproutes::HttpRoute;

use super::named_services;
use crate::derive::{Dirty, GatewayInputs, MemberSnapshot};
use crate::gateway_api::{self, ObjKey, Outcome, RouteOutcome};

/// Route outcomes as last evaluated, by route.
#[derive(Default)]
pub(super) struct Memo {
    by_route: HashMap<ObjKey, Remembered>,
    /// Counts evaluations: an entry not met in the last one is for a deleted route.
    pass: u64,
}

struct Remembered {
    /// The route's version, the Gateways and the route namespace's labels it was made with.
    stamp: u64,
    /// Hashes of the Services the route names.
    services: Vec<u64>,
    /// `None`: no parent of the route is ours.
    outcome: Option<Arc<RouteOutcome>>,
    pass: u64,
}

pub(super) fn hash_of(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// [`gateway_api::evaluate`], reusing every route outcome whose inputs did not change.
pub(super) fn evaluate(
    g: &GatewayInputs<'_>,
    members: &[MemberSnapshot],
    dirty: &Dirty,
    memo: &mut Memo,
) -> Outcome {
    let inputs = g.inputs();
    let backends = g.backends(members);
    let (classes, gateways) = gateway_api::gateways(&inputs);
    // Few Gateways: any change of one evaluates every route again.
    let shared = hash_of(&format!("{gateways:?}"));
    let labels: HashMap<&str, u64> = (g.namespaces.iter())
        .map(|(ns, l)| (ns.as_str(), hash_of(l)))
        .collect();
    memo.pass += 1;
    let mut routes = Vec::with_capacity(inputs.routes.len());
    for route in inputs.routes {
        let key = ObjKey::of(&route.metadata);
        let ns = labels.get(key.namespace.as_str());
        let stamp = hash_of(&(shared, ns, version_of(route)));
        let fresh = |key: &ObjKey| Remembered {
            stamp,
            services: named_services(route, key),
            outcome: gateway_api::route_outcome(route, &inputs, &gateways, &backends).map(Arc::new),
            pass: memo.pass,
        };
        let r = match memo.by_route.entry(key) {
            Entry::Occupied(mut o) => {
                let r = o.get();
                if r.stamp != stamp || dirty.touches(&r.services) {
                    let r = fresh(o.key());
                    o.insert(r);
                }
                o.into_mut()
            }
            Entry::Vacant(v) => {
                let r = fresh(v.key());
                v.insert(r)
            }
        };
        r.pass = memo.pass;
        routes.extend(r.outcome.clone());
    }
    let pass = memo.pass;
    memo.by_route.retain(|_, r| r.pass == pass);
    gateway_api::assemble(classes, gateways, routes)
}

/// A hash of the route's version: its uid and resourceVersion where the API server set them
/// (every edit changes the resourceVersion), else its whole content (hand-written dumps).
pub(super) fn version_of(route: &HttpRoute) -> u64 {
    match (&route.metadata.uid, &route.metadata.resource_version) {
        (Some(uid), Some(rv)) if !rv.is_empty() => hash_of(&(uid, rv)),
        _ => hash_of(&serde_json::to_string(route).unwrap_or_default()),
    }
}
