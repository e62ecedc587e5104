//! The root context: the static config, and newer routes and states pulled from the controller
//! or adopted from shared data.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{self, Config, ConfigSourceV1};

use super::http::Http;
use super::pull::Channel;
use super::{host, pull, HealthStore, Metrics, Vm};

pub(super) struct Root {
    vm: Rc<RefCell<Vm>>,
    /// From the static config: where to pull newer configs.
    source: Option<ConfigSourceV1>,
    /// From the static config: the header names pulled configs must keep.
    headers: Option<config::HeaderNames>,
    vm_token: u64,
    /// The config (routes and the state they came with); its ETag is the routes revision
    /// when state is pulled apart.
    config: Channel,
    /// The state document, pulled apart from the routes.
    state: Channel,
    /// The controller answered 404 to the state pull (one without `/v1/state`): full configs
    /// only, which carry the state too.
    no_state: bool,
}

/// What a pull answered.
enum Answer {
    NotModified,
    Body {
        etag: String,
        body: Vec<u8>,
    },
    /// Why; `not_found`: the answer was 404.
    Failed {
        why: String,
        not_found: bool,
    },
}

impl Root {
    pub(super) fn new() -> Self {
        let now = host::now_ms();
        let vm_token = pull::unique_vm_token(now);
        Root {
            vm: Rc::new(RefCell::new(Vm {
                config: None,
                rng: fastrand::Rng::with_seed(now ^ vm_token.rotate_left(32)),
                metrics: Metrics::default(),
                health: HealthStore::default(),
            })),
            source: None,
            headers: None,
            vm_token,
            config: Channel::default(),
            state: Channel::default(),
            no_state: false,
        }
    }

    /// Adopt a config another worker stored in shared data, if it is new.
    fn adopt_shared_config(&mut self, now_ms: u64) {
        let Some((etag, json)) = pull::shared_news(&pull::CONFIG, &mut self.config) else {
            return;
        };
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        match self.parse_pulled(&json, &etag) {
            Ok(cfg) => vm.adopt(cfg, "shared data", now_ms),
            Err(e) => vm.reject("shared data", &e),
        }
        self.config.etag = Some(etag);
        // The state record may be for these routes: look at it again.
        self.state.seen = None;
    }

    /// Apply a state another worker stored in shared data, if it is new and for our routes.
    fn adopt_shared_state(&mut self, now_ms: u64) {
        let Some((etag, json)) = pull::shared_news(&pull::STATE, &mut self.state) else {
            return;
        };
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        match vm.with_state(&json) {
            Ok(next) => vm.adopt_state(next, "shared data", now_ms),
            // For routes this worker has not adopted yet: normal while routes change; it is
            // looked at again once they are (see `adopt_shared_config`).
            Err(e) if e.path == "routes_revision" => return,
            Err(e) => vm.reject_state("shared data", &e),
        }
        self.state.etag = Some(etag);
    }

    /// A config from the controller (directly or through shared data) with its ETag (empty:
    /// the config's own revision), which is its routes revision when state is pulled apart.
    fn parse_pulled(&self, json: &[u8], etag: &str) -> Result<Config, config::ConfigError> {
        let mut cfg = config::parse(json)?;
        if let Some(h) = &self.headers {
            h.check_pulled(&cfg)?;
        }
        if self.source.as_ref().is_some_and(pull::split) {
            let etag = Some(etag.to_string()).filter(|e| !e.is_empty());
            cfg.routes_revision = etag.or_else(|| cfg.revision.clone());
        }
        Ok(cfg)
    }

    fn maybe_pull(&mut self, now_ms: u64) {
        let Some(src) = &self.source else { return };
        // State is pulled once the routes it names are known (the static config has none).
        let has_routes_revision = self.vm.try_borrow().is_ok_and(|vm| {
            vm.config
                .as_ref()
                .is_some_and(|c| c.routes_revision.is_some())
        });
        let want_state =
            pull::split(src) && !self.no_state && has_routes_revision && self.state.idle(now_ms);
        let want_config = self.config.idle(now_ms);
        if !(want_config || want_state)
            || !pull::acquire_lease(self.vm_token, now_ms, pull::lease_ms(src))
        {
            return;
        }
        let retry_at = now_ms + 5 * u64::from(src.poll_ms);
        if want_config {
            start(src, &mut self.config, &pull::config_path(src), retry_at);
        }
        if want_state {
            start(src, &mut self.state, &pull::state_path(src), retry_at);
        }
    }

    /// A 200 to the config pull.
    fn on_pulled_config(&mut self, etag: String, body: &[u8], now: u64, backoff: u64) {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        match self.parse_pulled(body, &etag) {
            Ok(cfg) => {
                let etag = if etag.is_empty() {
                    cfg.revision.clone().unwrap_or_default()
                } else {
                    etag
                };
                pull::store(&pull::CONFIG, &mut self.config, &etag, body);
                vm.adopt(cfg, "controller", now);
                // New routes: fetch their current state at once rather than wait for a change.
                self.state.etag = None;
                self.config.etag = Some(etag);
            }
            Err(e) => {
                vm.reject("controller", &e);
                self.config.retry_at_ms = backoff;
                self.config.etag = Some(etag);
            }
        }
    }

    /// A 200 to the state pull.
    fn on_pulled_state(&mut self, etag: String, body: &[u8], now: u64, backoff: u64) {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        match vm.with_state(body) {
            Ok(next) => {
                pull::store(&pull::STATE, &mut self.state, &etag, body);
                vm.adopt_state(next, "controller", now);
            }
            Err(e) => {
                vm.reject_state("controller", &e);
                self.state.retry_at_ms = backoff;
            }
        }
        self.state.etag = Some(etag);
    }
}

/// Start a long-poll on `ch`; if the host refuses the call, retry at `retry_at`.
fn start(src: &ConfigSourceV1, ch: &mut Channel, path: &str, retry_at: u64) {
    ch.in_flight = pull::dispatch(src, path, ch.etag.as_deref());
    if ch.in_flight.is_none() {
        host::log(
            host::LOG_WARN,
            &format!(
                "fleetgate: cannot call config source upstream \"{}\"",
                src.upstream
            ),
        );
        ch.retry_at_ms = retry_at;
    }
}

/// Read the answer to the call that just completed.
fn answer(num_headers: usize, body_size: usize) -> Answer {
    if num_headers == 0 {
        return Answer::Failed {
            why: "failed (no response)".to_string(),
            not_found: false,
        };
    }
    let status = host::call_response_header(":status").unwrap_or_default();
    match status.as_str() {
        "304" => Answer::NotModified,
        "200" => Answer::Body {
            body: host::call_response_body(body_size).unwrap_or_default(),
            etag: host::call_response_header("etag")
                .map(|e| pull::strip_etag(&e))
                .unwrap_or_default(),
        },
        other => Answer::Failed {
            why: format!("answered status \"{other}\""),
            not_found: other == "404",
        },
    }
}

/// The callbacks [`abi`] routes to a root context.
impl Root {
    pub(super) fn flush_host_errors(&self) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.metrics.flush_host_errors();
        }
    }

    pub(super) fn owns_call(&self, token: u32) -> bool {
        self.config.in_flight == Some(token) || self.state.in_flight == Some(token)
    }

    pub(super) fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let is_config = self.config.in_flight == Some(token);
        if !is_config && self.state.in_flight != Some(token) {
            return;
        }
        let (ch, doc) = match is_config {
            true => (&mut self.config, "config"),
            false => (&mut self.state, "state"),
        };
        ch.in_flight = None;
        let now = host::now_ms();
        let backoff = now + 5 * u64::from(self.source.as_ref().map_or(1000, |s| s.poll_ms));
        match answer(num_headers, body_size) {
            Answer::NotModified => {}
            Answer::Failed {
                not_found: true, ..
            } if !is_config => {
                host::log(
                    host::LOG_INFO,
                    "fleetgate: the controller serves no state document (404); pulling full configs only",
                );
                self.no_state = true;
            }
            Answer::Failed { why, .. } => {
                host::log(host::LOG_WARN, &format!("fleetgate: {doc} pull {why}"));
                ch.retry_at_ms = backoff;
            }
            Answer::Body { etag, body } if is_config => {
                self.on_pulled_config(etag, &body, now, backoff)
            }
            Answer::Body { etag, body } => self.on_pulled_state(etag, &body, now, backoff),
        }
    }

    pub(super) fn on_configure(&mut self, _: usize) -> bool {
        let raw = host::plugin_configuration(usize::MAX).unwrap_or_default();
        let now = host::now_ms();
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return false;
        };
        match config::parse(&raw) {
            Ok(cfg) => {
                let source = cfg.config_source.clone();
                self.headers = Some(config::HeaderNames::of(&cfg));
                self.config.etag = cfg.revision.clone();
                vm.adopt(cfg, "plugin configuration", now);
                drop(vm);
                if let Some(src) = &source {
                    host::set_tick_period(src.poll_ms);
                }
                self.source = source;
                true
            }
            Err(e) => {
                vm.reject("plugin configuration", &e);
                false
            }
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = host::now_ms();
        self.adopt_shared_config(now);
        self.adopt_shared_state(now);
        self.maybe_pull(now);
    }

    pub(super) fn create_http(&self) -> Http {
        Http::new(self.vm.clone())
    }
}
