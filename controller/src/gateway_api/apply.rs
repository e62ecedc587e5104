//! Writing the status [`super::evaluate`] asks for: for each GatewayClass, Gateway and HTTPRoute
//! whose status is not already the one [`super::status`] builds, one server-side apply of its
//! `/status` (field manager [`FIELD_MANAGER`], forced). Unchanged objects cost no request.
//!
//! An HTTPRoute's `status.parents` is shared with the controllers of its other parents, and the
//! CRD declares it without `x-kubernetes-list-type`: an atomic list, which an apply replaces
//! whole. So the applied list is the whole list (the other controllers' entries as read, then
//! ours), and the apply carries the route's `resourceVersion`: if another controller wrote in
//! between, the apply fails with a conflict instead of dropping its entry, and the next pass
//! (woken by that write) applies again from the new list.

use std::collections::BTreeMap;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tracing::{info, warn};

use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteStatus};
use k8s_openapi_gw::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::watch::Kind;
use super::{status, GatewayOutcome, ObjKey, Objects, Outcome, RouteOutcome, CONTROLLER_NAME};
use crate::admin::Metrics;
use crate::derive::GatewayInputs;
use crate::store::Snapshot;

/// The field manager of fleetgate's status writes.
pub const FIELD_MANAGER: &str = "fleetgate-controller";
/// The version status is written at (the one the watches read these kinds at).
const VERSION: &str = "v1";

/// One status apply.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusApply {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    /// The apply configuration: apiVersion, kind, metadata and the whole status.
    pub body: Value,
}

/// `now` as status times are written (whole seconds, as the API stores them).
pub fn now() -> Time {
    let t = k8s_openapi_gw::jiff::Timestamp::now();
    Time(k8s_openapi_gw::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The applies needed to bring every object of ours to the status `outcome` asks for: none for
/// an object whose status already is that.
pub fn changes(outcome: &Outcome, objects: &Objects, now: &Time) -> Vec<StatusApply> {
    let gateways: BTreeMap<&ObjKey, &GatewayOutcome> =
        outcome.gateways.iter().map(|g| (&g.key, g)).collect();
    let routes: BTreeMap<&ObjKey, &RouteOutcome> =
        outcome.routes.iter().map(|r| (&r.route, &**r)).collect();
    let classes = objects.classes.iter().filter_map(|c| {
        let accepted = outcome.classes.get(c.metadata.name.as_deref()?)?;
        let want = status::class(accepted, c.metadata.generation, c.status.as_ref(), now);
        apply_if_changed(Kind::GatewayClass, &c.metadata, c.status.as_ref(), &want)
    });
    let gateways = objects.gateways.iter().filter_map(|g| {
        let evaluated = gateways.get(&ObjKey::of(&g.metadata))?;
        let want = status::gateway(evaluated, g.status.as_ref(), now);
        apply_if_changed(Kind::Gateway, &g.metadata, g.status.as_ref(), &want)
    });
    let routes = objects.http_routes.iter().filter_map(|r| {
        let evaluated = routes.get(&ObjKey::of(&r.metadata)).copied();
        let want = route_status(r, evaluated, now)?;
        apply_if_changed(Kind::HttpRoute, &r.metadata, r.status.as_ref(), &want)
    });
    classes.chain(gateways).chain(routes).collect()
}

/// A route's status: as evaluated where one of its parents is ours; else, if it still has
/// entries of ours (its parentRef to our Gateway was removed), the list without them.
fn route_status(
    r: &HttpRoute,
    outcome: Option<&RouteOutcome>,
    now: &Time,
) -> Option<HttpRouteStatus> {
    match outcome {
        Some(o) => Some(status::route(
            o,
            r.metadata.generation,
            r.status.as_ref(),
            now,
        )),
        None => {
            let current = r.status.as_ref()?;
            let mut parents = current.parents.clone();
            parents.retain(|p| p.controller_name != CONTROLLER_NAME);
            (parents.len() != current.parents.len()).then_some(HttpRouteStatus { parents })
        }
    }
}

/// An apply of `want` unless it is the `current` status.
fn apply_if_changed<S: serde::Serialize + PartialEq>(
    kind: Kind,
    meta: &ObjectMeta,
    current: Option<&S>,
    want: &S,
) -> Option<StatusApply> {
    if current == Some(want) {
        return None;
    }
    let ar = kind.resource(VERSION);
    let mut metadata = json!({"name": meta.name});
    if !kind.cluster_scoped() {
        metadata["namespace"] = json!(meta.namespace);
    }
    // The shared, atomic parents list: only over the version it was read from.
    if kind == Kind::HttpRoute {
        metadata["resourceVersion"] = json!(meta.resource_version);
    }
    let body = json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": metadata,
        "status": want,
    });
    Some(StatusApply {
        kind,
        namespace: meta.namespace.clone().filter(|_| !kind.cluster_scoped()),
        name: meta.name.clone().unwrap_or_default(),
        body,
    })
}

/// The evaluation of the fleet as the store sees it (until derive hands its own outcome).
pub fn evaluate_fleet(snap: &Snapshot, address: Option<&str>) -> Outcome {
    inputs(snap, address).evaluate(&snap.members)
}

/// The snapshot's Gateway API objects as derive reads them.
pub fn inputs<'s>(snap: &'s Snapshot, address: Option<&'s str>) -> GatewayInputs<'s> {
    GatewayInputs {
        objects: &snap.gateway_api,
        namespaces: &snap.namespaces,
        address,
    }
}

/// Send one status apply.
pub async fn send(client: &Client, a: &StatusApply) -> Result<(), kube::Error> {
    let ar = a.kind.resource(VERSION);
    let api: Api<DynamicObject> = match &a.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&a.name, &params, &Patch::Apply(&a.body))
        .await?;
    Ok(())
}

/// Write every status that differs from what `outcome` asks for; a failed write is logged and
/// counted, and the others still go.
pub async fn write_status(
    client: &Client,
    outcome: &Outcome,
    objects: &Objects,
    now: &Time,
    metrics: &Metrics,
) {
    for a in changes(outcome, objects, now) {
        let ns = a.namespace.as_deref().unwrap_or_default();
        match send(client, &a).await {
            Ok(()) => {}
            // A route written by another controller since it was read: that write wakes the
            // next pass, which applies again over it.
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                info!(kind = a.kind.name(), namespace = %ns, name = %a.name, "changed meanwhile; status applied again on the next pass");
            }
            Err(e) => {
                warn!(kind = a.kind.name(), namespace = %ns, name = %a.name, err = %e, "cannot write Gateway API status");
                metrics.error("gateway_api_status");
            }
        }
    }
}
