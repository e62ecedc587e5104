//! A purpose-built guest that exercises the hostcalls the fleetgate plugin relies on, so the
//! test host can be proven against a real SDK build without the plugin.
//!
//! Plugin configuration is `key=value` pairs separated by `;`:
//! `reject` refuses the configuration, `tick_ms=N` sets a tick period, `upstream=NAME` names the
//! cluster written to `x-fleetgate-upstream`. On each tick the root context calls the
//! `controller` upstream and stores the response body in shared data under `config`.
//!
//! Each request picks a scenario with the `x-probe` request header:
//! - absent: set `x-fleetgate-upstream`, call `clear_route_cache`, echo the clock, a property and
//!   a metric into request headers;
//! - `deny`: send a local 403 response;
//! - `callout`: pause, call the `authz` upstream, resume with its status in `x-probe-authz`;
//! - `cas`: read shared key `hits` on request headers, write it back (+1) with the CAS read then
//!   on response headers, reporting `ok` or `mismatch` in response header `x-probe-cas`.
//!
//! Every response echoes `response.code` and `response.flags` into response headers.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot::default()) });
}}

#[derive(Default, Clone)]
struct Metrics {
    requests: u32,
    ticks: u32,
    callout_failures: u32,
    config_bytes: u32,
}

#[derive(Default)]
struct ProbeRoot {
    upstream: String,
    metrics: Metrics,
    pending_ticks: Rc<Cell<u32>>,
}

impl Context for ProbeRoot {
    fn on_http_call_response(&mut self, _: u32, num_headers: usize, body_size: usize, _: usize) {
        if num_headers == 0 {
            let _ = hostcalls::increment_metric(self.metrics.callout_failures, 1);
            proxy_wasm::hostcalls::log(LogLevel::Warn, "controller call failed").ok();
            return;
        }
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let _ = self.set_shared_data("config", Some(&body), None);
        let _ = hostcalls::record_metric(self.metrics.config_bytes, body.len() as u64);
        proxy_wasm::hostcalls::log(
            LogLevel::Info,
            &format!(
                "controller answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        )
        .ok();
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        proxy_wasm::hostcalls::log(LogLevel::Debug, "vm started").ok();
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let config = self
            .get_plugin_configuration()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        self.upstream = "default-cluster".to_owned();
        for item in config
            .split(';')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            match item.split_once('=') {
                None if item == "reject" => {
                    proxy_wasm::hostcalls::log(LogLevel::Error, "configuration rejected").ok();
                    return false;
                }
                Some(("tick_ms", ms)) => {
                    let ms = ms.parse().unwrap_or(1000);
                    self.set_tick_period(Duration::from_millis(ms));
                }
                Some(("upstream", name)) => self.upstream = name.to_owned(),
                _ => {}
            }
        }
        self.metrics = Metrics {
            requests: define(MetricType::Counter, "probe_requests_total"),
            ticks: define(MetricType::Counter, "probe_ticks_total"),
            callout_failures: define(MetricType::Counter, "probe_callout_failures_total"),
            config_bytes: define(MetricType::Gauge, "probe_config_bytes"),
        };
        proxy_wasm::hostcalls::log(LogLevel::Info, &format!("configured: {config}")).ok();
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.metrics.ticks, 1);
        self.pending_ticks.set(self.pending_ticks.get() + 1);
        let headers = vec![
            (":method", "GET"),
            (":path", "/config"),
            (":authority", "controller"),
        ];
        match self.dispatch_http_call("controller", headers, None, vec![], Duration::from_secs(5)) {
            Ok(token) => {
                proxy_wasm::hostcalls::log(LogLevel::Debug, &format!("tick: call {token}")).ok();
            }
            Err(status) => {
                proxy_wasm::hostcalls::log(LogLevel::Warn, &format!("tick: {status:?}")).ok();
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeHttp {
            upstream: self.upstream.clone(),
            metrics: self.metrics.clone(),
            cas: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or(0)
}

struct ProbeHttp {
    upstream: String,
    metrics: Metrics,
    /// The value and CAS read on request headers, for the `cas` scenario.
    cas: Option<(u64, Option<u32>)>,
}

impl Context for ProbeHttp {
    fn on_http_call_response(&mut self, _: u32, num_headers: usize, _: usize, _: usize) {
        let status = if num_headers == 0 {
            "failed".to_owned()
        } else {
            self.get_http_call_response_header(":status")
                .unwrap_or_default()
        };
        self.set_http_request_header("x-probe-authz", Some(&status));
        self.resume_http_request();
    }
}

impl HttpContext for ProbeHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = hostcalls::increment_metric(self.metrics.requests, 1);
        match self.get_http_request_header("x-probe").as_deref() {
            Some("deny") => {
                self.send_http_response(403, vec![("x-probe-denied", "1")], Some(b"denied"));
                Action::Pause
            }
            Some("callout") => {
                let headers = vec![
                    (":method", "POST"),
                    (":path", "/check"),
                    (":authority", "authz"),
                ];
                match self.dispatch_http_call(
                    "authz",
                    headers,
                    Some(b"who"),
                    vec![],
                    Duration::from_secs(1),
                ) {
                    Ok(_) => Action::Pause,
                    Err(status) => {
                        self.set_http_request_header("x-probe-authz", Some(&format!("{status:?}")));
                        Action::Continue
                    }
                }
            }
            Some("cas") => {
                let (bytes, cas) = self.get_shared_data("hits");
                let value = bytes
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0u64);
                self.cas = Some((value, cas));
                Action::Continue
            }
            _ => {
                self.set_http_request_header("x-fleetgate-upstream", Some(&self.upstream));
                let cleared = match hostcalls::call_foreign_function("clear_route_cache", None) {
                    Ok(_) => "ok".to_owned(),
                    Err(status) => format!("{status:?}"),
                };
                self.set_http_request_header("x-probe-clear", Some(&cleared));
                let now = self
                    .get_current_time()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos().to_string())
                    .unwrap_or_default();
                self.set_http_request_header("x-probe-now", Some(&now));
                let cluster = self
                    .get_property(vec!["xds", "cluster_name"])
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|| "absent".to_owned());
                self.set_http_request_header("x-probe-cluster", Some(&cluster));
                let requests = hostcalls::get_metric(self.metrics.requests).unwrap_or(0);
                self.set_http_request_header("x-probe-requests", Some(&requests.to_string()));
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let code = self
            .get_property(vec!["response", "code"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| i64::from_le_bytes(b).to_string())
            .unwrap_or_else(|| "absent".to_owned());
        self.set_http_response_header("x-probe-code", Some(&code));
        let flags = self
            .get_property(vec!["response", "flags"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| format!("{:#x}", u64::from_le_bytes(b)))
            .unwrap_or_else(|| "absent".to_owned());
        self.set_http_response_header("x-probe-flags", Some(&flags));
        if let Some((value, cas)) = self.cas.take() {
            let next = (value + 1).to_string();
            let outcome = match self.set_shared_data("hits", Some(next.as_bytes()), cas) {
                Ok(()) => "ok",
                Err(Status::CasMismatch) => "mismatch",
                Err(_) => "error",
            };
            self.set_http_response_header("x-probe-cas", Some(outcome));
        }
        Action::Continue
    }
}
