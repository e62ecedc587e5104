//! What a decision does to the request and the response, as plain data: the filter only
//! applies it, so the 503 reply, the sticky cookie and the decision header are tested natively.

use crate::config::Config;
use crate::decide::{Decision, Reason, Target};

/// A reply the gateway sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Request-phase effects, applied in field order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestEffects {
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    /// Answer locally (and pause the request) instead of forwarding it.
    pub local_reply: Option<LocalReply>,
    /// Request headers changed: make Envoy pick the route again.
    pub clear_route_cache: bool,
}

/// The request effects of a decision. `sent` names the routing headers (`cluster_header`,
/// `mirror_header`) the client sent itself: they go unless the decision sets them, so nobody
/// picks an upstream by hand. `None` = no route matched.
pub fn on_request(cfg: &Config, decision: Option<&Decision>, sent: &[&str]) -> RequestEffects {
    let Some(d) = decision else {
        return RequestEffects {
            remove_headers: sent.iter().map(|h| h.to_string()).collect(),
            clear_route_cache: !sent.is_empty(),
            ..RequestEffects::default()
        };
    };
    let route = &cfg.routes[d.route];
    let Some(t) = &d.target else {
        return RequestEffects {
            local_reply: Some(unavailable(cfg, &route.name)),
            ..RequestEffects::default()
        };
    };
    let mut fx = RequestEffects {
        set_headers: vec![(
            cfg.cluster_header.clone(),
            cfg.upstream_name(t.upstream).to_string(),
        )],
        clear_route_cache: true,
        ..RequestEffects::default()
    };
    match d.mirror {
        Some(m) => fx
            .set_headers
            .push((cfg.mirror_header.clone(), cfg.upstream_name(m).to_string())),
        None if sent.contains(&cfg.mirror_header.as_str()) => {
            fx.remove_headers.push(cfg.mirror_header.clone())
        }
        None => {}
    }
    fx
}

fn unavailable(cfg: &Config, route: &str) -> LocalReply {
    let mut headers = vec![("content-type".to_string(), "text/plain".to_string())];
    if let Some(h) = &cfg.decision_header {
        headers.push((h.clone(), format!("reason=unavailable; route={route}")));
    }
    LocalReply {
        status: 503,
        headers,
        body: format!("fleetgate: no healthy cluster for route {route}\n"),
    }
}

/// Response headers to add for a routed request: the decision header and the sticky cookie.
pub fn on_response(cfg: &Config, route: usize, t: &Target) -> Vec<(String, String)> {
    let Some(r) = cfg.routes.get(route) else {
        return Vec::new();
    };
    let cluster = cfg.clusters.get(t.cluster).map_or("", |c| c.id.as_str());
    let mut out = Vec::new();
    if let Some(h) = &cfg.decision_header {
        let reason = t.reason.as_str();
        out.push((
            h.clone(),
            format!("cluster={cluster}; reason={reason}; route={}", r.name),
        ));
    }
    if let (true, Some(s)) = (t.set_sticky, &r.sticky) {
        out.push((
            "set-cookie".to_string(),
            format!(
                "{}={cluster}; Path=/; Max-Age={}; HttpOnly",
                s.cookie, s.max_age_seconds
            ),
        ));
    }
    out
}

/// Reasons that mean the preferred cluster could not take the request.
pub fn is_failover(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Failover | Reason::Standby | Reason::Fallback | Reason::Panic
    )
}
