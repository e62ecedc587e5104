//! The Proxy-Wasm glue: read what the engine needs from the host once, call the pure engine,
//! apply its decision. The exports live in [`abi`], the imports in [`hostcalls`]; every
//! hostcall goes through [`host`], which never panics.

mod abi;
mod health_store;
mod host;
mod hostcalls;
mod metrics;
mod pull;

use std::cell::RefCell;
use std::rc::Rc;

use abi::{CONTINUE, PAUSE};

use crate::config::{self, Config, ConfigSourceV1};
use crate::decide::{self, Target};
use crate::effects::{self, RequestEffects};
use crate::failover;
use crate::health::{self, Transition};
use crate::request::RequestView;

use health_store::HealthStore;
use metrics::Metrics;

/// What every context of one VM shares.
struct Vm {
    config: Option<Rc<Config>>,
    rng: fastrand::Rng,
    metrics: Metrics,
    health: HealthStore,
}

impl Vm {
    /// Put a validated config in service (failback timers carried over from the old one).
    fn adopt(&mut self, mut cfg: Config, origin: &str, now_ms: u64) {
        failover::carry_over(self.config.as_deref(), &mut cfg, now_ms);
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
}

struct Root {
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
    fn new() -> Self {
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
    fn flush_host_errors(&self) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.metrics.flush_host_errors();
        }
    }

    fn owns_call(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
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

    fn on_configure(&mut self, _: usize) -> bool {
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

    fn on_tick(&mut self) {
        let now = host::now_ms();
        self.adopt_shared(now);
        self.maybe_pull(now);
    }

    fn create_http(&self) -> Http {
        Http {
            vm: self.vm.clone(),
            routed: None,
        }
    }
}

/// The request as the host gave it: header pairs borrowed from the one answer buffer.
struct HostRequest<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> HostRequest<'a> {
    fn new(pairs: Vec<(&'a [u8], &'a [u8])>) -> Self {
        HostRequest { pairs }
    }
}

impl RequestView for HostRequest<'_> {
    fn authority(&self) -> &str {
        self.header(":authority").unwrap_or("")
    }
    fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }
    /// First value; a value that is not UTF-8 is present but matches nothing the config can
    /// name, so it reads as U+FFFD.
    fn header(&self, name: &str) -> Option<&str> {
        let (_, v) = self.pairs.iter().find(|(k, _)| *k == name.as_bytes())?;
        Some(std::str::from_utf8(v).unwrap_or("\u{fffd}"))
    }
}

/// What a request was routed to, kept for the response and the passive-health report.
struct Routed {
    cfg: Rc<Config>,
    route: usize,
    target: Target,
}

struct Http {
    vm: Rc<RefCell<Vm>>,
    routed: Option<Routed>,
}

impl Http {
    /// The decision for this request; the `proxy_action_t` to answer.
    fn decide(&mut self) -> u32 {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return CONTINUE;
        };
        let Some(cfg) = vm.config.clone() else {
            return CONTINUE;
        };
        // One hostcall for every header the decision may need, looked up in place.
        let raw = host::request_headers();
        let req = HostRequest::new(host::header_pairs(&raw));
        let sent: Vec<&str> = [&cfg.cluster_header, &cfg.mirror_header]
            .into_iter()
            .map(String::as_str)
            .filter(|h| req.header(h).is_some())
            .collect();
        let Some(ri) = cfg.table.lookup(req.authority(), req.path()) else {
            return apply(effects::on_request(&cfg, None, &sent));
        };
        let Vm {
            health,
            rng,
            metrics,
            ..
        } = &mut *vm;
        let now = health.load(&cfg, &cfg.routes[ri]);
        let health = &*health;
        let Some(d) = decide::select_in_route(&cfg, ri, &req, |u| health.cached(u), now, rng)
        else {
            return CONTINUE;
        };
        let action = apply(effects::on_request(&cfg, Some(&d), &sent));
        let Some(t) = d.target else {
            metrics.inc("fleetgate_unavailable_total");
            return action;
        };
        if d.mirror.is_some() {
            metrics.inc("fleetgate_mirrored_total");
        }
        let cluster_id = cfg.clusters.get(t.cluster).map_or("", |c| c.id.as_str());
        metrics.inc_request(t.cluster, cluster_id, t.reason);
        if effects::is_failover(t.reason) {
            metrics.inc("fleetgate_failovers_total");
        }
        self.routed = Some(Routed {
            cfg: cfg.clone(),
            route: ri,
            target: t,
        });
        action
    }
}

/// Apply request effects; the action to answer (pause only behind a local reply the host took,
/// else the stream would hang).
fn apply(fx: RequestEffects) -> u32 {
    for (k, v) in &fx.set_headers {
        host::set_request_header(k, v);
    }
    for k in &fx.remove_headers {
        host::remove_request_header(k);
    }
    if fx.clear_route_cache {
        host::clear_route_cache();
    }
    match fx.local_reply {
        Some(r) => {
            let headers: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if host::send_local_response(r.status, &headers, &r.body) {
                PAUSE
            } else {
                CONTINUE
            }
        }
        None => CONTINUE,
    }
}

/// The callbacks [`abi`] routes to an HTTP context.
impl Http {
    fn flush_host_errors(&self) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.metrics.flush_host_errors();
        }
    }

    fn on_request_headers(&mut self) -> u32 {
        self.decide()
    }

    fn on_response_headers(&mut self) -> u32 {
        if let Some(r) = &self.routed {
            for (k, v) in effects::on_response(&r.cfg, r.route, &r.target) {
                host::add_response_header(&k, &v);
            }
        }
        CONTINUE
    }

    fn on_log(&mut self) {
        let Some(r) = self.routed.take() else { return };
        if !r.cfg.passive.enabled {
            return;
        }
        let (upstream_id, cluster) = (r.target.upstream, r.target.cluster);
        let upstream = r.cfg.upstream_name(upstream_id);
        let code = host::int_property(&[&["response", "code"]]);
        let flags = host::int_property(&[&["response", "flags"]]);
        if code.is_none() && flags.is_none() {
            return;
        }
        // A retried request (to another cluster through an aggregate cluster) means the first
        // attempt, on the cluster we chose, failed; asked only if the response looks fine.
        let failed = health::is_failure(code, flags, r.cfg.passive.count_5xx)
            || host::int_property(&[&["upstream", "request_attempt_count"]]).is_some_and(|n| n > 1);
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        if !failed && vm.health.known_healthy(upstream_id) {
            return;
        }
        // If Envoy sent the request somewhere else (a route without our cluster header), the
        // outcome says nothing about our upstream. Asked only off the fast path: hostcalls cost.
        if let Some(used) = host::string_property(&[&["xds", "cluster_name"], &["cluster_name"]]) {
            if used != upstream {
                return;
            }
        }
        let now = host::now_ms();
        let t = vm
            .health
            .observe(&r.cfg, upstream_id, failed, now, &r.cfg.passive);
        let cluster_id = r.cfg.clusters.get(cluster).map_or("", |c| c.id.as_str());
        match t {
            Transition::Ejected { for_ms } => {
                host::log(
                    host::LOG_WARN,
                    &format!(
                        "fleetgate: ejected upstream {upstream} (cluster {cluster_id}) for {} ms after consecutive failures",
                        for_ms
                    ),
                );
                vm.metrics
                    .inc(&format!("fleetgate_ejections_total.cluster.{cluster_id}"));
            }
            Transition::Recovered => {
                host::log(
                    host::LOG_INFO,
                    &format!("fleetgate: upstream {upstream} (cluster {cluster_id}) recovered"),
                );
                vm.metrics
                    .inc(&format!("fleetgate_recoveries_total.cluster.{cluster_id}"));
            }
            Transition::None | Transition::Updated => {}
        }
    }
}
