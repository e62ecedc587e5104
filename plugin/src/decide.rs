//! The per-request decision: pins and canaries first, then stickiness, then the route's policy
//! over the backends usable now. Pure: the caller supplies the request, passive health and time.

use crate::config::{Config, Mode, Route, Service, UpstreamId, WhenUnavailable};
use crate::failover::{availability, Availability};
use crate::health::PassiveState;
use crate::request::{cookie, matches, RequestView};
use crate::route::Match;
use crate::split::pick;

/// Why a cluster was chosen (shown in the decision header and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A pin rule matched.
    Pin,
    /// The route-by-header value named the cluster.
    Header,
    /// A canary (by condition or weight).
    Canary,
    /// The sticky cookie kept the client on its cluster.
    Sticky,
    /// Active-active split, all weighted clusters usable.
    Weight,
    /// Active-standby, the primary.
    Primary,
    /// Active-standby, a standby (primary unusable or still in failback hold/ramp).
    Standby,
    /// Active-active with some cluster unusable (its share moved), or a pin's cluster unusable.
    Failover,
    /// The base service had no usable backend: the route's fallback service took it.
    Fallback,
    /// No healthy cluster: spread regardless of health.
    Panic,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pin => "pin",
            Reason::Header => "header",
            Reason::Canary => "canary",
            Reason::Sticky => "sticky",
            Reason::Weight => "weight",
            Reason::Primary => "primary",
            Reason::Standby => "standby",
            Reason::Failover => "failover",
            Reason::Fallback => "fallback",
            Reason::Panic => "panic",
        }
    }
    pub const ALL: [Reason; 10] = [
        Reason::Pin,
        Reason::Header,
        Reason::Canary,
        Reason::Sticky,
        Reason::Weight,
        Reason::Primary,
        Reason::Standby,
        Reason::Failover,
        Reason::Fallback,
        Reason::Panic,
    ];
}

/// The chosen upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `None` = the base service (or, with reason `Fallback`, the fallback service),
    /// `Some(i)` = canary i.
    pub canary: Option<usize>,
    pub cluster: usize,
    pub upstream: UpstreamId,
    pub reason: Reason,
    /// Set the sticky cookie to this cluster on the response.
    pub set_sticky: bool,
}

/// A request the route answers itself, without a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// The route's redirect.
    Redirect,
    /// A direct response: the route's (`None`) or canary `c`'s share (`Some(c)`).
    Direct(Option<usize>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub route: usize,
    /// The entry of the route's `paths` that matched.
    pub path: usize,
    /// `None` = no cluster takes the request: `local` says how it is answered, else 503.
    pub target: Option<Target>,
    pub mirror: Option<UpstreamId>,
    pub local: Option<Local>,
}

/// Route one request. `None` = no route matches (pass through).
///
/// `passive` answers each upstream's passive-health state at `now_ms`. The filter reads it from
/// shared data; a native caller (the controller's `explain`) passes `|_| PassiveState::default()`
/// for "nothing ejected", or marks chosen upstreams as ejected:
/// `|u| if ejected(u) { PassiveState::ejected_until(u64::MAX) } else { PassiveState::default() }`.
pub fn select<R, P>(
    cfg: &Config,
    req: &R,
    passive: P,
    now_ms: u64,
    rng: &mut fastrand::Rng,
) -> Option<Decision>
where
    R: RequestView + ?Sized,
    P: Fn(UpstreamId) -> PassiveState,
{
    let m = cfg.table.lookup(req)?;
    select_in_route(cfg, m, req, passive, now_ms, rng)
}

/// [`select`] for a route already looked up (the filter looks up first, to read only the
/// headers that route needs).
pub fn select_in_route<R, P>(
    cfg: &Config,
    m: Match,
    req: &R,
    passive: P,
    now_ms: u64,
    rng: &mut fastrand::Rng,
) -> Option<Decision>
where
    R: RequestView + ?Sized,
    P: Fn(UpstreamId) -> PassiveState,
{
    let route = cfg.routes.get(m.route)?;
    let ctx = Ctx {
        cfg,
        route,
        passive: &passive,
        now_ms,
    };
    // A redirect or direct route answers before any backend is considered.
    let (target, local) = if route.filters.redirect.is_some() {
        (None, Some(Local::Redirect))
    } else if route.filters.direct.is_some() {
        (None, Some(Local::Direct(None)))
    } else {
        match ctx.target(req, rng) {
            Ok(t) => (t, None),
            Err(l) => (None, Some(l)),
        }
    };
    let mirror = match (&target, route.mirror) {
        (Some(_), Some((up, pct))) if rng.f64() * 100.0 < pct => Some(up),
        _ => None,
    };
    Some(Decision {
        route: m.route,
        path: m.path,
        target,
        mirror,
        local,
    })
}

struct Ctx<'a, P> {
    cfg: &'a Config,
    route: &'a Route,
    passive: &'a P,
    now_ms: u64,
}

impl<P: Fn(UpstreamId) -> PassiveState> Ctx<'_, P> {
    fn avail(&self, svc: &Service, i: usize) -> Availability {
        let b = &svc.backends[i];
        availability(
            self.cfg,
            self.route,
            b,
            &(self.passive)(b.upstream),
            self.now_ms,
        )
    }

    fn target_of(&self, canary: Option<usize>, backend: usize, reason: Reason) -> Target {
        let svc = match canary {
            Some(c) => &self.route.canaries[c],
            None => &self.route.base,
        };
        let b = &svc.backends[backend];
        Target {
            canary,
            cluster: b.cluster,
            upstream: b.upstream,
            reason,
            set_sticky: false,
        }
    }

    /// `Err` = a canary with a direct response took the request.
    fn target<R: RequestView + ?Sized>(
        &self,
        req: &R,
        rng: &mut fastrand::Rng,
    ) -> Result<Option<Target>, Local> {
        let route = self.route;
        let base = &route.base;

        // 1. Pins: first matching rule; an unusable pinned cluster falls back to the policy.
        for pin in &route.pins {
            if matches(req, &pin.when) {
                if self.base_usable(pin.backend) {
                    return Ok(Some(self.target_of(None, pin.backend, Reason::Pin)));
                }
                return Ok(self.policy(rng, Some(Reason::Failover)));
            }
        }
        // 2. The header that names the cluster.
        if let Some(h) = &route.route_by_header {
            if let Some(i) = req.header(h).and_then(|v| self.backend_in(base, v.trim())) {
                if self.base_usable(i) {
                    return Ok(Some(self.target_of(None, i, Reason::Header)));
                }
                return Ok(self.policy(rng, Some(Reason::Failover)));
            }
        }
        // 3. Canaries: conditions first (in order), then weights. A canary with nothing usable
        //    sends its traffic to the base service (Higress fallback clusters).
        for (c, when) in route.canary_when.iter().enumerate() {
            if !when.is_empty() && when.iter().any(|cond| matches(req, cond)) {
                if let Some(t) = self.canary(c, rng)? {
                    return Ok(Some(t));
                }
                return Ok(self.policy(rng, None));
            }
        }
        if route.canary_percent.iter().any(|&p| p > 0) {
            let mut draw = rng.u32(0..100);
            for (c, &p) in route.canary_percent.iter().enumerate() {
                if draw < p {
                    if let Some(t) = self.canary(c, rng)? {
                        return Ok(Some(t));
                    }
                    break;
                }
                draw -= p;
            }
        }
        // 4. Stickiness.
        if let Some(s) = &route.sticky {
            let named = req
                .header("cookie")
                .and_then(|c| cookie(c, &s.cookie))
                .and_then(|v| self.backend_in(base, v));
            if let Some(i) = named {
                if self.base_usable(i) {
                    return Ok(Some(self.target_of(None, i, Reason::Sticky)));
                }
            }
            return Ok(self.policy(rng, None).map(|mut t| {
                t.set_sticky = !matches!(t.reason, Reason::Panic | Reason::Fallback);
                t
            }));
        }
        // 5. The policy.
        Ok(self.policy(rng, None))
    }

    /// May base backend `i` take this request? Active-standby never uses a cluster outside
    /// `order`, whatever a pin, header or cookie names.
    fn base_usable(&self, i: usize) -> bool {
        let member = self.route.mode == Mode::ActiveActive || self.route.order.contains(&i);
        member && self.avail(&self.route.base, i).usable
    }

    fn backend_in(&self, svc: &Service, cluster_id: &str) -> Option<usize> {
        svc.backends.iter().position(|b| {
            self.cfg
                .clusters
                .get(b.cluster)
                .is_some_and(|c| c.id == cluster_id)
        })
    }

    /// Canary `c`'s pick; `Err` = its share is answered by its direct response.
    fn canary(&self, c: usize, rng: &mut fastrand::Rng) -> Result<Option<Target>, Local> {
        if matches!(self.route.canary_direct.get(c), Some(Some(_))) {
            return Err(Local::Direct(Some(c)));
        }
        let svc = &self.route.canaries[c];
        let av: Vec<Availability> = (0..svc.backends.len())
            .map(|i| self.avail(svc, i))
            .collect();
        let i = weighted(self.cfg, svc, &av, |a| a.usable, true, rng);
        Ok(i.map(|i| self.target_of(Some(c), i, Reason::Canary)))
    }

    /// The fallback service's usable backends, chosen like active-active.
    fn fallback(&self, rng: &mut fastrand::Rng) -> Option<Target> {
        let svc = self.route.fallback.as_ref()?;
        let av: Vec<Availability> = (0..svc.backends.len())
            .map(|i| self.avail(svc, i))
            .collect();
        let b = &svc.backends[weighted(self.cfg, svc, &av, |a| a.usable, true, rng)?];
        Some(Target {
            canary: None,
            cluster: b.cluster,
            upstream: b.upstream,
            reason: Reason::Fallback,
            set_sticky: false,
        })
    }

    /// The route's policy over its base service. `forced` overrides the reason (pin fallback).
    fn policy(&self, rng: &mut fastrand::Rng, forced: Option<Reason>) -> Option<Target> {
        let route = self.route;
        let svc = &route.base;
        let av: Vec<Availability> = (0..svc.backends.len())
            .map(|i| self.avail(svc, i))
            .collect();
        let chosen = match route.mode {
            Mode::ActiveActive => weighted(self.cfg, svc, &av, |a| a.usable, true, rng).map(|i| {
                let all_up = svc
                    .backends
                    .iter()
                    .zip(&av)
                    .all(|(b, a)| b.drained || (a.usable && a.factor >= 1.0));
                (
                    i,
                    if all_up {
                        Reason::Weight
                    } else {
                        Reason::Failover
                    },
                )
            }),
            Mode::ActiveStandby => standby(&route.order, &av, rng).map(|i| {
                let primary = route.order.first() == Some(&i);
                (
                    i,
                    if primary {
                        Reason::Primary
                    } else {
                        Reason::Standby
                    },
                )
            }),
        };
        if let Some((i, reason)) = chosen {
            return Some(self.target_of(None, i, forced.unwrap_or(reason)));
        }
        if let Some(t) = self.fallback(rng) {
            return Some(t);
        }
        // Every backend the controller allows is ejected by passive health: trust the
        // controller rather than fail everything (Envoy's panic threshold does the same).
        let members = |i: usize| route.mode == Mode::ActiveActive || route.order.contains(&i);
        let pool: Vec<Availability> = av
            .iter()
            .enumerate()
            .map(|(i, a)| Availability {
                usable: a.by_controller && members(i),
                ..*a
            })
            .collect();
        if let Some(i) = weighted(self.cfg, svc, &pool, |a| a.usable, false, rng) {
            return Some(self.target_of(None, i, Reason::Panic));
        }
        match route.when_unavailable {
            WhenUnavailable::Reject => None,
            WhenUnavailable::Panic => {
                let i = weighted(self.cfg, svc, &av, |_| true, false, rng)?;
                Some(self.target_of(None, i, Reason::Panic))
            }
        }
    }
}

/// Weighted pick among backends that pass `ok`: weight x failback/probation factor; if every
/// candidate is held at factor 0, ignore the factors; if every weight is 0, pick uniformly.
fn weighted(
    cfg: &Config,
    svc: &Service,
    av: &[Availability],
    ok: impl Fn(&Availability) -> bool,
    use_factor: bool,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let cands = || {
        svc.backends
            .iter()
            .zip(av)
            .enumerate()
            .filter(|(_, (_, a))| ok(a))
    };
    cands().next()?;
    let draw = rng.f64();
    if use_factor {
        let with_factor = cands().map(|(i, (b, a))| (i, f64::from(cfg.weight(b)) * a.factor));
        if let Some(i) = pick(with_factor, draw) {
            return Some(i);
        }
    }
    let plain = cands().map(|(i, (b, _))| (i, f64::from(cfg.weight(b))));
    pick(plain, draw).or_else(|| pick(cands().map(|(i, _)| (i, 1.0)), draw))
}

/// Active-standby: walk the order; each usable cluster takes its ramp factor of what is left
/// (a primary ramping back at 30% takes 30%, the first standby the rest).
fn standby(order: &[usize], av: &[Availability], rng: &mut fastrand::Rng) -> Option<usize> {
    let mut shares = [0.0f64; 16];
    let mut remaining = 1.0;
    let mut first_usable = None;
    for (k, &i) in order.iter().enumerate().take(shares.len()) {
        let a = av[i];
        if !a.usable {
            continue;
        }
        first_usable.get_or_insert(i);
        shares[k] = remaining * a.factor;
        remaining -= shares[k];
        if remaining <= 0.0 {
            break;
        }
    }
    let first_usable = first_usable?;
    let draw = rng.f64();
    pick(order.iter().copied().zip(shares.iter().copied()), draw).or(Some(first_usable))
}
