//! The root context: the static config, and newer ones pulled from the controller or adopted
//! from shared data.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{self, Config, ConfigSourceV1};

use super::http::Http;
use super::{host, pull, HealthStore, Metrics, Vm};

pub(super) struct Root {
    vm: Rc<RefCell<Vm>>,
    /// From the static config: where to pull newer configs.
    source: Option<ConfigSourceV1>,
    /// From the static config: the header names pulled configs must keep.
    headers: Option<config::HeaderNames>,
    vm_token: u64,
    in_flight: Option<u32>,
    /// ETag of the config this VM runs (or of a rejected one, so the long-poll waits for news).
    etag: Option<String>,
    /// CAS token of the shared config record last looked at.
    shared_cas: Option<u32>,
    retry_at_ms: u64,
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
            in_flight: None,
            etag: None,
            shared_cas: None,
            retry_at_ms: 0,
        }
    }

    /// Adopt a config another worker stored in shared data, if it is new.
    fn adopt_shared(&mut self, now_ms: u64) {
        let (v, cas) = host::shared_get(pull::CONFIG_KEY);
        if cas == self.shared_cas {
            return;
        }
        self.shared_cas = cas;
        let Some((etag, json)) = v.as_deref().and_then(pull::decode_shared) else {
            return;
        };
        if self.etag.as_deref() == Some(etag.as_str()) {
            return;
        }
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        match self.parse_pulled(json) {
            Ok(cfg) => vm.adopt(cfg, "shared data", now_ms),
            Err(e) => vm.reject("shared data", &e),
        }
        self.etag = Some(etag);
    }

    /// A config from the controller (directly or through shared data).
    fn parse_pulled(&self, json: &[u8]) -> Result<Config, config::ConfigError> {
        let cfg = config::parse(json)?;
        match &self.headers {
            Some(h) => h.check_pulled(&cfg).map(|()| cfg),
            None => Ok(cfg),
        }
    }

    fn maybe_pull(&mut self, now_ms: u64) {
        let Some(src) = &self.source else { return };
        if self.in_flight.is_some() || now_ms < self.retry_at_ms {
            return;
        }
        if !pull::acquire_lease(self.vm_token, now_ms, pull::lease_ms(src)) {
            return;
        }
        self.in_flight = pull::dispatch(src, self.etag.as_deref());
        if self.in_flight.is_none() {
            host::log(
                host::LOG_WARN,
                &format!(
                    "fleetgate: cannot call config source upstream \"{}\"",
                    src.upstream
                ),
            );
            self.retry_at_ms = now_ms + 5 * u64::from(src.poll_ms);
        }
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
        self.in_flight == Some(token)
    }

    pub(super) fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let now = host::now_ms();
        let backoff = now + 5 * u64::from(self.source.as_ref().map_or(1000, |s| s.poll_ms));
        if num_headers == 0 {
            host::log(
                host::LOG_WARN,
                "fleetgate: config pull failed (no response)",
            );
            self.retry_at_ms = backoff;
            return;
        }
        let status = host::call_response_header(":status").unwrap_or_default();
        match status.as_str() {
            "304" => {}
            "200" => {
                let body = host::call_response_body(body_size).unwrap_or_default();
                let etag = host::call_response_header("etag")
                    .map(|e| pull::strip_etag(&e))
                    .unwrap_or_default();
                let Ok(mut vm) = self.vm.try_borrow_mut() else {
                    return;
                };
                match self.parse_pulled(&body) {
                    Ok(cfg) => {
                        let etag = if etag.is_empty() {
                            cfg.revision.clone().unwrap_or_default()
                        } else {
                            etag
                        };
                        let _ = host::shared_set(
                            pull::CONFIG_KEY,
                            &pull::encode_shared(&etag, &body),
                            None,
                        );
                        self.shared_cas = host::shared_get(pull::CONFIG_KEY).1;
                        vm.adopt(cfg, "controller", now);
                        self.etag = Some(etag);
                    }
                    Err(e) => {
                        vm.reject("controller", &e);
                        self.etag = Some(etag);
                        self.retry_at_ms = backoff;
                    }
                }
            }
            other => {
                host::log(
                    host::LOG_WARN,
                    &format!("fleetgate: config pull answered status \"{other}\""),
                );
                self.retry_at_ms = backoff;
            }
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
                self.etag = cfg.revision.clone();
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
        self.adopt_shared(now);
        self.maybe_pull(now);
    }

    pub(super) fn create_http(&self) -> Http {
        Http::new(self.vm.clone())
    }
}
