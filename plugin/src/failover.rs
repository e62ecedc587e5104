//! Which backends may take traffic now, and how much: the control plane's view (cluster state,
//! ready endpoints against `min_healthy`), the data plane's passive health, and the failback
//! hold-down and ramp of a backend that came back (its timer is set by [`crate::failback`]).

use crate::config::{
    Backend, BackendState, ClusterState, Config, Mode, Route, Service, Slot, UpstreamId,
};
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

/// Does the controller's view let this backend (of `route`) take traffic? See [`slot_allows`].
pub fn controller_allows(cfg: &Config, _route: &Route, b: &Backend) -> bool {
    slot_allows(cfg, b.slot)
}

/// Does the controller's view let the backend in `slot` take traffic: its cluster not `down`,
/// its ready endpoints (if counted) at least its route's `min_healthy`?
pub fn slot_allows(cfg: &Config, slot: usize) -> bool {
    let (Some(s), Some(b)) = (cfg.slots.get(slot), cfg.backends.get(slot)) else {
        return false;
    };
    let state = cfg
        .clusters
        .get(s.cluster as usize)
        .map_or(ClusterState::Down, |c| c.state);
    allows(state == ClusterState::Down, s, b)
}

/// [`slot_allows`] for every slot in order, in one pass (a state update at 10,000 routes).
pub fn slots_allowed(cfg: &Config) -> Vec<bool> {
    let down: Vec<bool> = cfg
        .clusters
        .iter()
        .map(|c| c.state == ClusterState::Down)
        .collect();
    let down_at = |c: u32| down.get(c as usize).copied().unwrap_or(true);
    (cfg.slots.iter().zip(&cfg.backends))
        .map(|(s, b)| allows(down_at(s.cluster), s, b))
        .collect()
}

fn allows(cluster_down: bool, s: &Slot, b: &BackendState) -> bool {
    !cluster_down && b.ready.is_none_or(|r| r >= s.min_healthy)
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
    let failback = match cfg.recovered_at_ms(b) {
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
