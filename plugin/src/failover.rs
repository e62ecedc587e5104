//! Which backends may take traffic now, and how much: the control plane's view (cluster state,
//! ready endpoints against `min_healthy`), the data plane's passive health, and the failback
//! hold-down and ramp of a backend that came back.

use std::collections::HashMap;

use crate::config::{Backend, ClusterState, Config, Mode, Route, Service, UpstreamId};
use crate::health::{ramp, PassiveState};

/// A backend's availability at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Availability {
    /// The controller's view allows traffic (cluster not `down`, enough ready endpoints).
    pub by_controller: bool,
    /// And passive health has not ejected it.
    pub usable: bool,
    /// Share of its normal weight it may take (failback hold/ramp, probation ramp), 0..=1.
    pub factor: f64,
}

/// Does the controller's view let this backend take traffic for this route?
pub fn controller_allows(cfg: &Config, route: &Route, b: &Backend) -> bool {
    let state = cfg
        .clusters
        .get(b.cluster)
        .map_or(ClusterState::Down, |c| c.state);
    state != ClusterState::Down && b.ready.is_none_or(|r| r >= route.min_healthy)
}

pub fn availability(
    cfg: &Config,
    route: &Route,
    b: &Backend,
    passive: &PassiveState,
    now_ms: u64,
) -> Availability {
    let by_controller = controller_allows(cfg, route, b);
    let usable = by_controller && !passive.is_ejected(now_ms);
    let failback = match b.recovered_at_ms {
        Some(t) => ramp(
            now_ms,
            t,
            route.failback.hold_seconds,
            route.failback.ramp_seconds,
        ),
        None => 1.0,
    };
    Availability {
        by_controller,
        usable,
        factor: failback.min(passive.factor(now_ms, &cfg.passive)),
    }
}

/// One backend of a route as a report sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStatus {
    /// Index into [`Config::clusters`].
    pub cluster: usize,
    pub upstream: UpstreamId,
    /// The controller's view allows traffic ([`controller_allows`]).
    pub by_controller: bool,
    /// And the upstream is not ejected: the plugin would send it traffic.
    pub usable: bool,
}

/// A route's availability by the plugin's own rule: per backend of the base service and of
/// the fallback service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteAvailability {
    pub base: Vec<BackendStatus>,
    pub fallback: Vec<BackendStatus>,
}

impl RouteAvailability {
    /// Clusters (indexes) that can take the base service's traffic now.
    pub fn usable_clusters(&self) -> impl Iterator<Item = usize> + '_ {
        self.base.iter().filter(|b| b.usable).map(|b| b.cluster)
    }

    /// Would a request be answered without the panic rule or `when_unavailable`?
    pub fn served(&self) -> bool {
        self.base.iter().chain(&self.fallback).any(|b| b.usable)
    }
}

/// Which backends of route `route_index` are usable, with `ejected` saying which upstreams
/// passive health has ejected (`&|_| false` for the controller's view alone). Failback hold
/// and ramp only shape shares, so they do not count here; in active-standby a base backend not
/// in `order` never takes traffic, so it is not usable. `None` if there is no such route.
pub fn route_availability(
    cfg: &Config,
    route_index: usize,
    ejected: &dyn Fn(UpstreamId) -> bool,
) -> Option<RouteAvailability> {
    let route = cfg.routes.get(route_index)?;
    let statuses = |svc: &Service, member: &dyn Fn(usize) -> bool| -> Vec<BackendStatus> {
        svc.backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let by_controller = controller_allows(cfg, route, b);
                BackendStatus {
                    cluster: b.cluster,
                    upstream: b.upstream,
                    by_controller,
                    usable: by_controller && member(i) && !ejected(b.upstream),
                }
            })
            .collect()
    };
    let in_order = |i: usize| route.mode == Mode::ActiveActive || route.order.contains(&i);
    Some(RouteAvailability {
        base: statuses(&route.base, &in_order),
        fallback: route
            .fallback
            .as_ref()
            .map(|f| statuses(f, &|_| true))
            .unwrap_or_default(),
    })
}

/// Carry failback timers across a config change: a backend that the old config made unusable
/// and the new one makes usable starts its hold-down now; one still ramping keeps its timer.
/// Backends are matched by (route name, service name, cluster id).
pub fn carry_over(old: Option<&Config>, new: &mut Config, now_ms: u64) {
    let Some(old) = old else { return };
    let mut before: HashMap<(&str, &str, &str), (bool, Option<u64>)> = HashMap::new();
    for r in &old.routes {
        for svc in services(r) {
            for b in &svc.backends {
                let id = old.clusters.get(b.cluster).map_or("", |c| c.id.as_str());
                before.insert(
                    (&r.name, &svc.name, id),
                    (controller_allows(old, r, b), b.recovered_at_ms),
                );
            }
        }
    }
    let clusters = new.clusters.clone();
    let mut updates = Vec::new();
    for (ri, r) in new.routes.iter().enumerate() {
        for (si, svc) in services(r).enumerate() {
            for (bi, b) in svc.backends.iter().enumerate() {
                let id = clusters.get(b.cluster).map_or("", |c| c.id.as_str());
                let Some(&(was_usable, was_recovered)) = before.get(&(&r.name, &svc.name, id))
                else {
                    continue;
                };
                let now_usable = controller_allows(new, r, b);
                let at = match (was_usable, now_usable) {
                    (false, true) => Some(now_ms),
                    (true, true) => was_recovered,
                    _ => None,
                };
                updates.push((ri, si, bi, at));
            }
        }
    }
    for (ri, si, bi, at) in updates {
        let r = &mut new.routes[ri];
        let svc = std::iter::once(&mut r.base)
            .chain(&mut r.canaries)
            .chain(&mut r.fallback)
            .nth(si);
        if let Some(b) = svc.and_then(|svc| svc.backends.get_mut(bi)) {
            b.recovered_at_ms = at;
        }
    }
}

/// A route's services in a fixed order: base, canaries, fallback.
fn services(r: &Route) -> impl Iterator<Item = &Service> {
    std::iter::once(&r.base)
        .chain(&r.canaries)
        .chain(&r.fallback)
}
