//! The status the spec asks for, in the `gateway-api` crate's own status types: a
//! GatewayClass's, a Gateway's (with its listeners), an HTTPRoute's parents of ours. The
//! caller gives the time; a condition whose status and reason did not change keeps its
//! `lastTransitionTime` from the current status, so writing only on change stays possible.

use gateway_api::apis::standard::gatewayclasses::GatewayClassStatus;
use gateway_api::apis::standard::gateways::{
    GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners,
    GatewayStatusListenersSupportedKinds,
};
use gateway_api::apis::standard::httproutes::{
    HttpRouteStatus, HttpRouteStatusParents, HttpRouteStatusParentsParentRef,
};
use k8s_openapi_gw::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{Cond, GatewayOutcome, RouteOutcome, CONTROLLER_NAME};

/// `cond` as an API condition; its transition time is the one in `current` when the status
/// and reason are unchanged, else `now`.
fn condition(cond: &Cond, generation: Option<i64>, current: &[Condition], now: &Time) -> Condition {
    let status = if cond.status { "True" } else { "False" };
    let same = current
        .iter()
        .find(|c| c.type_ == cond.type_ && c.status == status && c.reason == cond.reason);
    Condition {
        type_: cond.type_.clone(),
        status: status.to_string(),
        reason: cond.reason.clone(),
        message: cond.message.clone(),
        observed_generation: generation,
        last_transition_time: same.map_or_else(|| now.clone(), |c| c.last_transition_time.clone()),
    }
}

fn conditions(
    conds: &[Cond],
    generation: Option<i64>,
    current: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    conds
        .iter()
        .map(|c| condition(c, generation, current, now))
        .collect()
}

pub fn class(
    accepted: &Cond,
    generation: Option<i64>,
    current: Option<&GatewayClassStatus>,
    now: &Time,
) -> GatewayClassStatus {
    let current = current
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    GatewayClassStatus {
        conditions: Some(vec![condition(accepted, generation, current, now)]),
        supported_features: None,
    }
}

pub fn gateway(g: &GatewayOutcome, current: Option<&GatewayStatus>, now: &Time) -> GatewayStatus {
    let current_conds = current
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let current_listener = |name: &str| {
        let listeners = current
            .and_then(|s| s.listeners.as_deref())
            .unwrap_or_default();
        listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.conditions.as_slice())
            .unwrap_or_default()
    };
    let listeners = (g.listeners.iter())
        .map(|l| GatewayStatusListeners {
            attached_routes: l.attached_routes,
            conditions: conditions(&l.conditions, g.generation, current_listener(&l.name), now),
            name: l.name.clone(),
            supported_kinds: Some(
                (l.supported_kinds.iter())
                    .map(|(group, kind)| GatewayStatusListenersSupportedKinds {
                        group: Some(group.clone()),
                        kind: kind.clone(),
                    })
                    .collect(),
            ),
        })
        .collect();
    GatewayStatus {
        addresses: g.address.as_ref().map(|a| vec![address(a)]),
        attached_listener_sets: None,
        conditions: Some(conditions(&g.conditions, g.generation, current_conds, now)),
        listeners: Some(listeners),
    }
}

fn address(a: &str) -> GatewayStatusAddresses {
    let is_ip = a.parse::<std::net::IpAddr>().is_ok();
    GatewayStatusAddresses {
        r#type: Some(if is_ip { "IPAddress" } else { "Hostname" }.to_string()),
        value: a.to_string(),
    }
}

/// The route's status: its parents of ours as evaluated, other controllers' entries kept.
pub fn route(
    r: &RouteOutcome,
    generation: Option<i64>,
    current: Option<&HttpRouteStatus>,
    now: &Time,
) -> HttpRouteStatus {
    let current = current.map(|s| s.parents.as_slice()).unwrap_or_default();
    let mut parents: Vec<HttpRouteStatusParents> = (current.iter())
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    for p in &r.parents {
        let parent_ref = HttpRouteStatusParentsParentRef {
            group: p.parent_ref.group.clone(),
            kind: p.parent_ref.kind.clone(),
            name: p.parent_ref.name.clone(),
            namespace: p.parent_ref.namespace.clone(),
            port: p.parent_ref.port,
            section_name: p.parent_ref.section_name.clone(),
        };
        let was = (current.iter())
            .find(|c| c.controller_name == CONTROLLER_NAME && c.parent_ref == parent_ref)
            .map(|c| c.conditions.as_slice())
            .unwrap_or_default();
        let mut conds = vec![p.accepted.clone(), p.resolved_refs.clone()];
        conds.extend(p.partially_invalid.clone());
        parents.push(HttpRouteStatusParents {
            conditions: conditions(&conds, generation, was, now),
            controller_name: CONTROLLER_NAME.to_string(),
            parent_ref,
        });
    }
    HttpRouteStatus { parents }
}
