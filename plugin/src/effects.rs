//! What a decision does to the request and the response, as plain data: the filter only
//! applies it, so the 503 reply, redirects, rewrites, header edits, the sticky cookie and the
//! decision header are tested natively.

use crate::config::{Config, HeaderEditV1, Route};
use crate::decide::{Decision, Local, Reason, Target};
use crate::request::RequestView;
use crate::rewrite::new_path;

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
    /// Replace every value of the header (pseudo-headers `:path`/`:authority` included).
    pub set_headers: Vec<(String, String)>,
    /// Append a value.
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    /// Answer locally (and pause the request) instead of forwarding it.
    pub local_reply: Option<LocalReply>,
    /// Request headers changed: make Envoy pick the route again.
    pub clear_route_cache: bool,
}

/// Response-phase effects, applied in field order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseEffects {
    pub set_headers: Vec<(String, String)>,
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

/// The request effects of a decision. `sent` names the routing headers (`cluster_header`,
/// `mirror_header`) the client sent itself: they go unless the decision sets them, so nobody
/// picks an upstream by hand. `None` = no route matched.
pub fn on_request<R: RequestView + ?Sized>(
    cfg: &Config,
    decision: Option<&Decision>,
    req: &R,
    sent: &[&str],
) -> RequestEffects {
    let Some(d) = decision else {
        return RequestEffects {
            remove_headers: sent.iter().map(|h| h.to_string()).collect(),
            clear_route_cache: !sent.is_empty(),
            ..RequestEffects::default()
        };
    };
    let route = &cfg.routes[d.route];
    // Not forwarded: a redirect, a direct response, or no cluster (503).
    let reply = match (d.local, &d.target) {
        (Some(l), _) => local(cfg, route, d, l, req),
        (None, None) => unavailable(cfg, &route.name),
        (None, Some(t)) => return forward(cfg, route, d, t, req, sent),
    };
    RequestEffects {
        local_reply: Some(reply),
        ..RequestEffects::default()
    }
}

/// The effects of a request forwarded to target `t`.
fn forward<R: RequestView + ?Sized>(
    cfg: &Config,
    route: &Route,
    d: &Decision,
    t: &Target,
    req: &R,
    sent: &[&str],
) -> RequestEffects {
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
    rewrite(route, d, req, &mut fx.set_headers);
    if let Some(e) = &route.filters.request_headers {
        edit(
            e,
            &mut fx.set_headers,
            &mut fx.add_headers,
            &mut fx.remove_headers,
        );
    }
    fx
}

/// The route's URL rewrite: a new `:authority` (no port: Gateway API replaces the host
/// whole) and/or `:path`.
fn rewrite<R: RequestView + ?Sized>(
    route: &Route,
    d: &Decision,
    req: &R,
    set: &mut Vec<(String, String)>,
) {
    let Some(rw) = &route.filters.rewrite else {
        return;
    };
    if let Some(h) = &rw.hostname {
        set.push((":authority".to_string(), h.clone()));
    }
    if let Some(p) = &rw.path {
        set.push((
            ":path".to_string(),
            new_path(p, matched(route, d), req.path()),
        ));
    }
}

/// The route path the request matched (a prefix rewrite replaces it).
fn matched<'a>(route: &'a Route, d: &Decision) -> &'a str {
    route.paths.get(d.path).map_or("/", |p| p.path.as_str())
}

/// A header edit as effects: set, add, remove.
fn edit(
    e: &HeaderEditV1,
    set: &mut Vec<(String, String)>,
    add: &mut Vec<(String, String)>,
    remove: &mut Vec<String>,
) {
    set.extend(e.set.iter().map(|h| (h.name.clone(), h.value.clone())));
    add.extend(e.add.iter().map(|h| (h.name.clone(), h.value.clone())));
    remove.extend(e.remove.iter().cloned());
}

/// A redirect or a direct response (the route's or a canary's).
fn local<R: RequestView + ?Sized>(
    cfg: &Config,
    route: &Route,
    d: &Decision,
    l: Local,
    req: &R,
) -> LocalReply {
    let direct = match l {
        Local::Redirect => {
            let Some(r) = &route.filters.redirect else {
                return unavailable(cfg, &route.name);
            };
            let loc = crate::redirect::location(r, matched(route, d), req);
            let headers = vec![("location".to_string(), loc)];
            return reply(
                cfg,
                &route.name,
                "redirect",
                u32::from(r.status),
                headers,
                "",
            );
        }
        Local::Direct(None) => route.filters.direct.as_ref(),
        Local::Direct(Some(c)) => route.canary_direct.get(c).and_then(Option::as_ref),
    };
    let Some(dr) = direct else {
        return unavailable(cfg, &route.name);
    };
    let headers = match dr.body.is_empty() {
        true => Vec::new(),
        false => vec![("content-type".to_string(), "text/plain".to_string())],
    };
    reply(
        cfg,
        &route.name,
        "direct",
        u32::from(dr.status),
        headers,
        &dr.body,
    )
}

fn unavailable(cfg: &Config, route: &str) -> LocalReply {
    let headers = vec![("content-type".to_string(), "text/plain".to_string())];
    let body = format!("fleetgate: no healthy cluster for route {route}\n");
    reply(cfg, route, "unavailable", 503, headers, &body)
}

/// A local reply, with the decision header if the config asks for one.
fn reply(
    cfg: &Config,
    route: &str,
    reason: &str,
    status: u32,
    mut headers: Vec<(String, String)>,
    body: &str,
) -> LocalReply {
    if let Some(h) = &cfg.decision_header {
        headers.push((h.clone(), format!("reason={reason}; route={route}")));
    }
    LocalReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Response effects for a routed request: the route's header edits, then the decision header
/// and the sticky cookie (added, before the edit's removals).
pub fn on_response(cfg: &Config, route: usize, t: &Target) -> ResponseEffects {
    let mut fx = ResponseEffects::default();
    let Some(r) = cfg.routes.get(route) else {
        return fx;
    };
    let cluster = cfg.clusters.get(t.cluster).map_or("", |c| c.id.as_str());
    if let Some(e) = &r.filters.response_headers {
        edit(
            e,
            &mut fx.set_headers,
            &mut fx.add_headers,
            &mut fx.remove_headers,
        );
    }
    if let Some(h) = &cfg.decision_header {
        let reason = t.reason.as_str();
        fx.add_headers.push((
            h.clone(),
            format!("cluster={cluster}; reason={reason}; route={}", r.name),
        ));
    }
    if let (true, Some(s)) = (t.set_sticky, &r.sticky) {
        fx.add_headers.push((
            "set-cookie".to_string(),
            format!(
                "{}={cluster}; Path=/; Max-Age={}; HttpOnly",
                s.cookie, s.max_age_seconds
            ),
        ));
    }
    fx
}

/// Reasons that mean the preferred cluster could not take the request.
pub fn is_failover(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Failover | Reason::Standby | Reason::Fallback | Reason::Panic
    )
}
