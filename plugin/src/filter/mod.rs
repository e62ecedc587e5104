//! The Proxy-Wasm glue: read what the engine needs from the host once, call the pure engine,
//! apply its decision. The exports live in [`abi`], the imports in [`hostcalls`]; every
//! hostcall goes through [`host`], which never panics.

mod abi;
mod failback_store;
mod health_store;
mod host;
mod hostcalls;
mod http;
mod metrics;
mod pull;
mod root;

use std::rc::Rc;

use crate::config::{self, Config};

use health_store::HealthStore;
use http::Http;
use metrics::Metrics;
use root::Root;

/// What every context of one VM shares.
struct Vm {
    config: Option<Rc<Config>>,
    rng: fastrand::Rng,
    metrics: Metrics,
    health: HealthStore,
}

impl Vm {
    /// Put a validated config in service (failback timers carried over from the old one and
    /// the shared ledger).
    fn adopt(&mut self, mut cfg: Config, origin: &str, now_ms: u64) {
        failback_store::carry_over(self.config.as_deref(), &mut cfg, now_ms);
        if let Some(seed) = cfg.random_seed {
            self.rng.seed(seed);
        }
        self.health.reset(&cfg);
        self.metrics.reset(cfg.clusters.len());
        host::log(
            host::LOG_INFO,
            &format!(
                "fleetgate: config accepted from {origin} (revision {}, {} routes, {} clusters)",
                cfg.revision.as_deref().unwrap_or("-"),
                cfg.routes.len(),
                cfg.clusters.len()
            ),
        );
        self.metrics.inc("fleetgate_config_accepts_total");
        self.config = Some(Rc::new(cfg));
    }

    fn reject(&mut self, origin: &str, err: &config::ConfigError) {
        host::log(
            host::LOG_ERROR,
            &format!(
                "fleetgate: config rejected from {origin}: {err}; keeping the last good config"
            ),
        );
        self.metrics.inc("fleetgate_config_rejections_total");
    }

    /// The config in service with the state document `json` applied (the routes are shared).
    fn with_state(&self, json: &[u8]) -> Result<Config, config::ConfigError> {
        let Some(cfg) = self.config.as_deref() else {
            return Err(config::ConfigError::new("", "no routes to apply it to yet"));
        };
        cfg.with_state(&config::parse_state(json)?)
    }

    /// Put a new state of the routes in service: timers carried by slot; the upstreams and
    /// clusters are those of the routes, so the health cache and metric ids stay.
    fn adopt_state(&mut self, mut next: Config, origin: &str, now_ms: u64) {
        if let Some(old) = self.config.as_deref() {
            failback_store::carry_state(old, &mut next, now_ms);
        }
        host::log(
            host::LOG_INFO,
            &format!(
                "fleetgate: state accepted from {origin} (revision {}, routes revision {})",
                next.state_revision.as_deref().unwrap_or("-"),
                next.routes_revision.as_deref().unwrap_or("-"),
            ),
        );
        self.metrics.inc("fleetgate_state_accepts_total");
        self.config = Some(Rc::new(next));
    }

    fn reject_state(&mut self, origin: &str, err: &config::ConfigError) {
        host::log(
            host::LOG_ERROR,
            &format!(
                "fleetgate: state rejected from {origin}: {err}; keeping the last good state and config"
            ),
        );
        self.metrics.inc("fleetgate_state_rejections_total");
    }
}
