//! Passive health shared by all worker VMs: one shared-data record per upstream, updated with
//! compare-and-swap, plus a generation key whose CAS token changes on every update so each VM
//! knows when its cached view is stale (one hostcall per request to check).

use crate::config::{Config, PassiveHealthV1, Route};
use crate::health::{PassiveState, Transition};

use super::host;

const GEN_KEY: &str = "fleetgate/health/gen";
const CAS_RETRIES: usize = 8;

fn key(upstream: &str) -> String {
    format!("fleetgate/health/{upstream}")
}

#[derive(Default)]
pub struct HealthStore {
    gen: Option<u32>,
    /// Per upstream id of the current config.
    cache: Vec<Option<PassiveState>>,
}

impl HealthStore {
    /// Forget cached states (the config's upstream ids changed).
    pub fn reset(&mut self, cfg: &Config) {
        self.cache = vec![None; cfg.upstreams.len()];
    }

    /// Make the states of a route's upstreams current, and answer the time the decision needs:
    /// read from the host only if a state or a failback timer depends on it (a quiet route
    /// costs no clock read; with passive health off, no shared-data read either).
    pub fn load(&mut self, cfg: &Config, route: &Route) -> u64 {
        if cfg.passive.enabled {
            self.refresh();
            self.prefetch(cfg, route.upstreams());
        }
        let quiet = route
            .upstreams()
            .all(|u| self.cached(u) == PassiveState::default());
        if quiet && !cfg.has_failback_timers(route) {
            0
        } else {
            host::now_ms()
        }
    }

    /// Drop the cache if another VM changed any record since we last looked.
    fn refresh(&mut self) {
        let (_, gen) = host::shared_get(GEN_KEY);
        if gen != self.gen {
            self.gen = gen;
            self.cache.iter_mut().for_each(|s| *s = None);
        }
    }

    /// Load the states of these upstreams into the cache.
    fn prefetch(&mut self, cfg: &Config, upstreams: impl Iterator<Item = usize>) {
        for u in upstreams {
            if let Some(slot) = self.cache.get_mut(u) {
                if slot.is_none() {
                    let (v, _) = host::shared_get(&key(cfg.upstream_name(u)));
                    *slot = Some(v.map(|b| PassiveState::decode(&b)).unwrap_or_default());
                }
            }
        }
    }

    pub fn cached(&self, u: usize) -> PassiveState {
        self.cache.get(u).copied().flatten().unwrap_or_default()
    }

    fn remember(&mut self, u: usize, s: PassiveState) {
        if let Some(slot) = self.cache.get_mut(u) {
            *slot = Some(s);
        }
    }

    /// A success on this upstream would change nothing (cached healthy, no failure streak).
    pub fn known_healthy(&self, u: usize) -> bool {
        matches!(self.cache.get(u), Some(Some(s)) if s.consecutive_failures == 0 && !s.probation)
    }

    /// Record one response for an upstream; read-modify-write with CAS so concurrent workers'
    /// evidence adds up.
    pub fn observe(
        &mut self,
        cfg: &Config,
        u: usize,
        failed: bool,
        now_ms: u64,
        p: &PassiveHealthV1,
    ) -> Transition {
        if !failed && self.known_healthy(u) {
            return Transition::None;
        }
        let k = key(cfg.upstream_name(u));
        for _ in 0..CAS_RETRIES {
            let (v, cas) = host::shared_get(&k);
            let mut s = v.map(|b| PassiveState::decode(&b)).unwrap_or_default();
            let t = s.observe(failed, now_ms, p);
            if t == Transition::None {
                self.remember(u, s);
                return t;
            }
            match host::shared_set(&k, &s.encode(), cas) {
                Ok(()) => {
                    let _ = host::shared_set(GEN_KEY, b"1", None);
                    self.remember(u, s);
                    return t;
                }
                Err(true) => continue,
                Err(false) => return Transition::None,
            }
        }
        Transition::None
    }
}
