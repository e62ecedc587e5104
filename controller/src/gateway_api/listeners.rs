//! A Gateway of ours and its listeners: which listeners can take routes, and the conditions
//! the spec asks for (Gateway `Accepted`/`Programmed`; per listener `Accepted`, `Conflicted`,
//! `ResolvedRefs`, `Programmed`, supported kinds and attached routes).

use std::collections::BTreeMap;
use std::sync::Arc;

use gateway_api::apis::standard::constants::{
    GatewayClassConditionReason as ClassReason, GatewayClassConditionType as ClassType,
    GatewayConditionReason as GwReason, GatewayConditionType as GwType,
    ListenerConditionReason as LReason, ListenerConditionType as LType,
};
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespaces,
    GatewayListenersAllowedRoutesNamespacesFrom as From,
};

use super::{Cond, ObjKey, RouteOutcome, GROUP};

/// The route kinds fleetgate serves, as `(group, kind)`.
pub const ROUTE_KINDS: &[(&str, &str)] = &[(GROUP, "HTTPRoute")];

/// A GatewayClass of ours is accepted: it has no parameters fleetgate could misread.
pub fn class_accepted(c: &GatewayClass) -> Cond {
    match &c.spec.parameters_ref {
        None => Cond::new(ClassType::Accepted, true, ClassReason::Accepted, "fleetgate serves this class"),
        Some(p) => Cond::new(
            ClassType::Accepted,
            false,
            ClassReason::InvalidParameters,
            format!("parametersRef {}/{} is not supported: fleetgate takes its settings from flags and annotations", p.kind, p.name),
        ),
    }
}

/// One listener as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerOutcome {
    pub name: String,
    pub port: i32,
    pub hostname: Option<String>,
    /// Namespaces routes may attach from (`None`: the Gateway's own).
    pub namespaces: Option<GatewayListenersAllowedRoutesNamespaces>,
    /// `(group, kind)` of the routes it takes.
    pub supported_kinds: Vec<(String, String)>,
    /// `Accepted`, `Conflicted`, `ResolvedRefs`, `Programmed`.
    pub conditions: Vec<Cond>,
    pub attached_routes: i32,
}

impl ListenerOutcome {
    /// Takes routes: programmed (valid, not conflicted, kinds resolved).
    pub fn usable(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == LType::Programmed.to_string() && c.status)
    }
}

/// A Gateway of ours as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayOutcome {
    pub key: ObjKey,
    pub generation: Option<i64>,
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerOutcome>,
    /// The address in status, if known.
    pub address: Option<String>,
}

pub fn evaluate(g: &Gateway, address: Option<&str>) -> GatewayOutcome {
    let conflicts = conflicts(&g.spec.listeners);
    let listeners: Vec<ListenerOutcome> = (g.spec.listeners.iter())
        .map(|l| listener(l, conflicts.get(l.name.as_str())))
        .collect();
    let usable = listeners.iter().filter(|l| l.usable()).count();
    let accepted = if g.spec.addresses.as_ref().is_some_and(|a| !a.is_empty()) {
        Cond::new(
            GwType::Accepted,
            false,
            GwReason::UnsupportedAddress,
            "spec.addresses is not supported: the gateway's address comes from its Service",
        )
    } else if usable == listeners.len() {
        Cond::new(
            GwType::Accepted,
            true,
            GwReason::Accepted,
            "every listener is valid",
        )
    } else {
        let msg = format!("{} of {} listeners are valid", usable, listeners.len());
        Cond::new(
            GwType::Accepted,
            usable > 0,
            GwReason::ListenersNotValid,
            msg,
        )
    };
    let programmed = match (accepted.status, address) {
        (false, _) => Cond::new(
            GwType::Programmed,
            false,
            GwReason::Invalid,
            "the Gateway is not accepted",
        ),
        (true, None) => Cond::new(
            GwType::Programmed,
            false,
            GwReason::AddressNotAssigned,
            "no address known (set --status-address); routes are programmed",
        ),
        (true, Some(a)) => Cond::new(
            GwType::Programmed,
            true,
            GwReason::Programmed,
            format!("serving at {a}"),
        ),
    };
    GatewayOutcome {
        key: ObjKey::of(&g.metadata),
        generation: g.metadata.generation,
        conditions: vec![accepted, programmed],
        listeners,
        address: address.map(str::to_string),
    }
}

fn listener(l: &GatewayListeners, conflict: Option<&Cond>) -> ListenerOutcome {
    let accepted = if l.protocol == "HTTP" {
        Cond::new(LType::Accepted, true, LReason::Accepted, "")
    } else {
        Cond::new(
            LType::Accepted,
            false,
            LReason::UnsupportedProtocol,
            format!(
                "protocol {} is not supported: fleetgate serves HTTP listeners",
                l.protocol
            ),
        )
    };
    let conflicted = conflict
        .cloned()
        .unwrap_or_else(|| Cond::new(LType::Conflicted, false, LReason::NoConflicts, ""));
    let (supported_kinds, resolved) = kinds(l);
    let ok = accepted.status && !conflicted.status && resolved.status;
    let programmed = match ok {
        true => Cond::new(LType::Programmed, true, LReason::Programmed, ""),
        false => Cond::new(
            LType::Programmed,
            false,
            LReason::Invalid,
            "the listener is not valid",
        ),
    };
    ListenerOutcome {
        name: l.name.clone(),
        port: l.port,
        hostname: l.hostname.clone(),
        namespaces: l.allowed_routes.as_ref().and_then(|a| a.namespaces.clone()),
        supported_kinds,
        conditions: vec![accepted, conflicted, resolved, programmed],
        attached_routes: 0,
    }
}

/// The supported route kinds a listener asks for, and its `ResolvedRefs` condition.
fn kinds(l: &GatewayListeners) -> (Vec<(String, String)>, Cond) {
    let asked = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref());
    let Some(asked) = asked.filter(|k| !k.is_empty()) else {
        let all = ROUTE_KINDS
            .iter()
            .map(|(g, k)| (g.to_string(), k.to_string()));
        return (
            all.collect(),
            Cond::new(LType::ResolvedRefs, true, LReason::ResolvedRefs, ""),
        );
    };
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for k in asked {
        let group = k.group.clone().unwrap_or_else(|| GROUP.to_string());
        if ROUTE_KINDS.contains(&(group.as_str(), k.kind.as_str())) {
            ok.push((group, k.kind.clone()));
        } else {
            bad.push(format!("{group}/{}", k.kind));
        }
    }
    let cond = match bad.is_empty() {
        true => Cond::new(LType::ResolvedRefs, true, LReason::ResolvedRefs, ""),
        false => Cond::new(
            LType::ResolvedRefs,
            false,
            LReason::InvalidRouteKinds,
            format!("route kinds not supported: {}", bad.join(", ")),
        ),
    };
    (ok, cond)
}

/// Listeners that share a port with another: a different protocol on it is a
/// `ProtocolConflict`, the same protocol and hostname a `HostnameConflict`.
fn conflicts(listeners: &[GatewayListeners]) -> BTreeMap<&str, Cond> {
    let mut out = BTreeMap::new();
    for l in listeners {
        let same_port = listeners
            .iter()
            .filter(|o| o.port == l.port && o.name != l.name);
        for o in same_port {
            let cond = if o.protocol != l.protocol {
                Cond::new(
                    LType::Conflicted,
                    true,
                    LReason::ProtocolConflict,
                    format!(
                        "listener {} uses port {} with protocol {}",
                        o.name, o.port, o.protocol
                    ),
                )
            } else if o.hostname == l.hostname {
                Cond::new(
                    LType::Conflicted,
                    true,
                    LReason::HostnameConflict,
                    format!("listener {} has the same port and hostname", o.name),
                )
            } else {
                continue;
            };
            out.entry(l.name.as_str()).or_insert(cond);
        }
    }
    out
}

/// Sets each listener's `attached_routes`: the routes accepted on it.
pub fn count_attached(gateways: &mut [GatewayOutcome], routes: &[Arc<RouteOutcome>]) {
    for a in routes.iter().flat_map(|r| &r.attachments) {
        let g = gateways.iter_mut().find(|g| g.key == a.gateway);
        if let Some(l) = g.and_then(|g| g.listeners.iter_mut().find(|l| l.name == a.listener)) {
            l.attached_routes += 1;
        }
    }
}

/// Whether a listener takes routes from `route_ns` (the Gateway lives in `gateway_ns`).
pub fn allows_namespace(
    l: &ListenerOutcome,
    gateway_ns: &str,
    route_ns: &str,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    let from = l
        .namespaces
        .as_ref()
        .and_then(|n| n.from.clone())
        .unwrap_or(From::Same);
    match from {
        From::Same => route_ns == gateway_ns,
        From::All => true,
        From::Selector => {
            let selector = l.namespaces.as_ref().and_then(|n| n.selector.as_ref());
            let mut ns_labels = labels.get(route_ns).cloned().unwrap_or_default();
            ns_labels.insert(
                "kubernetes.io/metadata.name".to_string(),
                route_ns.to_string(),
            );
            selector.is_some_and(|s| selects(s, &ns_labels))
        }
    }
}

/// A label selector of the crate's own shape, matched with kube's `Selector`.
fn selects<S: serde::Serialize>(selector: &S, labels: &BTreeMap<String, String>) -> bool {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::core::{Selector, SelectorExt};
    let parsed = serde_json::to_value(selector)
        .and_then(serde_json::from_value::<LabelSelector>)
        .ok()
        .and_then(|s| Selector::try_from(s).ok());
    // An unparsable selector selects nothing (the API server validates them anyway).
    parsed.is_some_and(|s| s.matches(labels))
}
