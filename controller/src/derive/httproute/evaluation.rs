//! The Gateway API evaluation, remembered per HTTPRoute: a route's outcome (where it attaches,
//! its conditions) is kept while everything it read stays the same, so a change of endpoints
//! evaluates only the routes that name a changed Service.
//!
//! A route's outcome reads the route itself, the Gateways of ours (as evaluated, with their
//! listeners), the labels of its own namespace, the ReferenceGrants and ServiceImports (the
//! caller forgets the memory when those change) and whether the Services it names exist.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use ::gateway_api::apis::standard::httproutes::HttpRoute;
use foldhash::HashMap;

use crate::derive::{Dirty, GatewayInputs, MemberSnapshot};
use crate::endpoints::svc_hash;
use crate::gateway_api::{self, ObjKey, Outcome, RouteOutcome};
use crate::hashing::hash_of;

/// Route outcomes as last evaluated, by route.
#[derive(Default)]
pub(super) struct Memo {
    by_route: HashMap<ObjKey, Remembered>,
    /// Indexes of the objects' routes, by key.
    order: Vec<usize>,
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
    /// The route's index in the objects.
    at: usize,
    pass: u64,
}

/// The evaluation, and per route of it (sorted by key, as in [`Outcome::routes`]) the index
/// of its HTTPRoute in the objects.
pub(super) struct Evaluated {
    pub outcome: Outcome,
    pub sources: Vec<usize>,
}

/// [`gateway_api::evaluate`], reusing every route outcome whose inputs did not change.
pub(super) fn evaluate(
    g: &GatewayInputs<'_>,
    members: &[MemberSnapshot],
    dirty: &Dirty,
    memo: &mut Memo,
) -> Evaluated {
    let inputs = g.inputs();
    let backends = g.backends(members);
    let (classes, gateways) = gateway_api::gateways(&inputs);
    // Few Gateways: any change of one evaluates every route again.
    let shared = hash_of(&format!("{gateways:?}"));
    let labels: HashMap<&str, u64> = (g.namespaces.iter())
        .map(|(ns, l)| (ns.as_str(), hash_of(l)))
        .collect();
    memo.pass += 1;
    let mut moved = false;
    let mut outcomes = Vec::with_capacity(inputs.routes.len());
    for (at, route) in inputs.routes.iter().enumerate() {
        let key = ObjKey::of(&route.metadata);
        let ns = labels.get(key.namespace.as_str());
        let m = &route.metadata;
        let version = version_of((m.uid.as_ref(), m.resource_version.as_ref()), route);
        let stamp = hash_of(&(shared, ns, version));
        let fresh = |key: &ObjKey| Remembered {
            stamp,
            services: named_services(route, key),
            outcome: gateway_api::route_outcome(route, &inputs, &gateways, &backends).map(Arc::new),
            at: usize::MAX,
            pass: memo.pass,
        };
        let r = remember(&mut memo.by_route, key, fresh, |r| {
            r.stamp != stamp || dirty.touches(&r.services)
        });
        moved |= std::mem::replace(&mut r.at, at) != at;
        r.pass = memo.pass;
        outcomes.push(r.outcome.clone());
    }
    let pass = memo.pass;
    memo.by_route.retain(|_, r| r.pass == pass);
    // The order by key stays while every route keeps its key and place (a route gone with
    // the length kept left its place to a new one).
    if moved || memo.order.len() != outcomes.len() {
        memo.order = by_key(inputs.routes);
    }
    let sources: Vec<usize> = (memo.order.iter().copied())
        .filter(|i| outcomes[*i].is_some())
        .collect();
    let routes = sources
        .iter()
        .filter_map(|i| outcomes[*i].clone())
        .collect();
    Evaluated {
        outcome: gateway_api::assemble(classes, gateways, routes),
        sources,
    }
}

/// The remembered entry of `key`, made `fresh` where there is none or it is `stale`.
fn remember(
    memo: &mut HashMap<ObjKey, Remembered>,
    key: ObjKey,
    fresh: impl Fn(&ObjKey) -> Remembered,
    stale: impl Fn(&Remembered) -> bool,
) -> &mut Remembered {
    match memo.entry(key) {
        Entry::Occupied(mut o) => {
            if stale(o.get()) {
                let r = fresh(o.key());
                o.insert(r);
            }
            o.into_mut()
        }
        Entry::Vacant(v) => {
            let r = fresh(v.key());
            v.insert(r)
        }
    }
}

/// Indexes of `routes` in the order of their keys (as [`ObjKey`] orders them; stable).
fn by_key(routes: &[HttpRoute]) -> Vec<usize> {
    let key = |i: usize| {
        let m = &routes[i].metadata;
        let (ns, name) = (m.namespace.as_deref(), m.name.as_deref());
        (ns.unwrap_or_default(), name.unwrap_or_default())
    };
    let mut order: Vec<usize> = (0..routes.len()).collect();
    order.sort_by(|a, b| key(*a).cmp(&key(*b)));
    order
}

/// Hashes of every Service the route's backendRefs and mirrors name (a ServiceImport names
/// the exported Service of its name), whether it resolves now or not: one appearing, changing
/// or going away must evaluate and translate the route again.
fn named_services(route: &HttpRoute, key: &ObjKey) -> Vec<u64> {
    let rules = route.spec.rules.iter().flatten();
    let backends = (rules.clone())
        .flat_map(|r| r.backend_refs.iter().flatten())
        .map(|b| (&b.namespace, &b.name));
    let mirrors = (rules.flat_map(|r| r.filters.iter().flatten()))
        .filter_map(|f| f.request_mirror.as_ref())
        .map(|m| (&m.backend_ref.namespace, &m.backend_ref.name));
    (backends.chain(mirrors))
        .map(|(ns, name)| {
            let ns = ns.as_deref().unwrap_or(&key.namespace);
            svc_hash(&(ns.to_string(), name.clone()))
        })
        .collect()
}

/// A hash of an object's version: its uid and resourceVersion where the API server set them
/// (every edit, of spec or status, changes the resourceVersion), else its whole content
/// (hand-written dumps).
pub(super) fn version_of(
    (uid, rv): (Option<&String>, Option<&String>),
    object: &impl serde::Serialize,
) -> u64 {
    match (uid, rv) {
        (Some(uid), Some(rv)) if !rv.is_empty() => hash_of(&(uid, rv)),
        _ => hash_of(&serde_json::to_string(object).unwrap_or_default()),
    }
}
