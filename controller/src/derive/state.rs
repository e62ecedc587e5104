//! Routes and state apart: the routes revision (the config without cluster states and ready
//! counts) and the plugin's state document (those alone, by position), so a gateway that pulls
//! them apart re-reads its routes only when they change.

use bytes::Bytes;
use fleetgate_plugin::config::{ClusterState, ConfigV1, Ready, RouteV1, StateV1};
use sha2::{Digest, Sha256};

use super::finish::hex16;
use super::routes::BuiltRoute;
use super::DeriveError;

/// The state half of a derivation.
#[derive(Debug, Clone)]
pub struct Split {
    /// Changes exactly when the routes or settings do, not with states or ready counts.
    pub routes_revision: String,
    pub state: StateV1,
    /// Compact JSON of `state` (what `/v1/state` serves).
    pub json: Bytes,
}

/// A route's digest without its ready counts, and those counts in the plugin's slot order
/// (base, canaries, fallback: [`fleetgate_plugin::config::Route::services`]).
pub(crate) fn shape_and_ready(route: &RouteV1) -> ([u8; 32], Vec<Option<u32>>) {
    let mut shape = route.clone();
    let backends = shape
        .backends
        .iter_mut()
        .chain(
            shape
                .canaries
                .iter_mut()
                .flat_map(|c| c.backends.iter_mut()),
        )
        .chain(
            shape
                .fallback
                .iter_mut()
                .flat_map(|f| f.backends.iter_mut()),
        );
    let ready = backends.map(|b| b.ready.take()).collect();
    let json = serde_json::to_vec(&shape).unwrap_or_default();
    (Sha256::digest(json).into(), ready)
}

/// The routes revision and state document of a config `head` (settings and cluster states,
/// no routes) with these routes in config order.
pub(crate) fn split<'a>(
    head: &ConfigV1,
    routes: impl Iterator<Item = &'a BuiltRoute> + Clone,
) -> Result<Split, DeriveError> {
    let mut shape = head.clone();
    shape.revision = None;
    for c in &mut shape.clusters {
        c.state = ClusterState::Healthy;
    }
    let mut hasher = Sha256::new();
    hasher.update(b"routes\n");
    hasher.update(serde_json::to_vec(&shape)?);
    for r in routes.clone() {
        hasher.update(r.shape_digest);
    }
    let routes_revision = hex16(&hasher.finalize());
    let mut state = StateV1 {
        version: 1,
        revision: String::new(),
        routes_revision: routes_revision.clone(),
        clusters: head
            .clusters
            .iter()
            .map(|c| (c.id.clone(), c.state))
            .collect(),
        ready: Ready::from_routes(routes.map(|r| r.ready.iter().copied())),
    };
    // The revision hashes the document (routes revision included) without itself.
    state.revision = hex16(&Sha256::digest(serde_json::to_vec(&state)?));
    let json = Bytes::from(serde_json::to_vec(&state)?);
    Ok(Split {
        routes_revision,
        state,
        json,
    })
}
