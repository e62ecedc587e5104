//! The plugin's behaviour, proven on the real `.wasm` in the test host: every routing feature,
//! split accuracy, passive health across worker VMs, failback across plugin instances, config
//! hand-off, bad configs and hostile requests. The core routing tests also run on the
//! `wasm32-unknown-unknown` build.

mod config;
mod failback;
mod failover;
mod faults;
mod fidelity;
mod hostile;
mod httproute;
mod limits;
mod pull;
mod routing;
mod split;
mod state;

use std::collections::BTreeMap;

use fleetgate_wasm_tests::{Host, HttpCallRequest, LogLevel, Module, Stream, Target, VmId};
use serde_json::{json, Value};

pub const UPSTREAM_HEADER: &str = "x-fleetgate-upstream";
pub const HOST_NAME: &str = "shop.example.com";

/// The upstream name used for a cluster in these tests.
pub fn up(cluster: &str) -> String {
    format!("outbound|80|{cluster}|shop.default.svc.cluster.local")
}

/// A config with clusters and one route over them; `route` fields override the defaults.
pub fn config(clusters: &[&str], route: Value) -> Value {
    let backends: Vec<Value> = clusters
        .iter()
        .map(|c| json!({"cluster": c, "upstream": up(c), "ready": 1}))
        .collect();
    let mut r = json!({
        "name": "default/shop",
        "hosts": [HOST_NAME],
        "backends": backends,
    });
    for (k, v) in route.as_object().expect("route fields") {
        r[k] = v.clone();
    }
    json!({
        "version": 1,
        "random_seed": 42,
        "decision_header": "x-fleetgate-decision",
        "clusters": clusters.iter().map(|c| json!({"id": c})).collect::<Vec<_>>(),
        "routes": [r],
    })
}

pub fn host_on(target: Target, cfg: &Value) -> Host {
    let host = Host::builder(&Module::plugin(target))
        .config(cfg.to_string())
        .log_level(LogLevel::Info)
        .build()
        .expect("host starts");
    assert!(host.configured(), "config rejected: {:?}", host.logs());
    host
}

pub fn host(cfg: &Value) -> Host {
    host_on(Target::Wasip1, cfg)
}

/// Send a GET for `path` with extra headers to the first VM; the stream is left open.
pub fn get(host: &Host, path: &str, headers: &[(&str, &str)]) -> Stream {
    get_on(host, VmId::FIRST, path, headers)
}

/// [`get`] on worker `vm`.
pub fn get_on(host: &Host, vm: VmId, path: &str, headers: &[(&str, &str)]) -> Stream {
    let mut r = host.request().vm(vm).authority(HOST_NAME).path(path);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.send()
}

/// The cluster a request was routed to (from the upstream header), after a 200 response.
pub fn route_once(host: &Host, headers: &[(&str, &str)]) -> Option<String> {
    route_once_on(host, VmId::FIRST, headers)
}

/// [`route_once`] on worker `vm`.
pub fn route_once_on(host: &Host, vm: VmId, headers: &[(&str, &str)]) -> Option<String> {
    let s = get_on(host, vm, "/", headers);
    let u = s.request_header(UPSTREAM_HEADER);
    s.respond(200).finish();
    u.map(|u| cluster_of(&u))
}

pub fn cluster_of(upstream: &str) -> String {
    upstream.split('|').nth(2).unwrap_or(upstream).to_string()
}

/// Route `n` requests on the first VM; count by cluster.
pub fn distribution(host: &Host, n: usize, headers: &[(&str, &str)]) -> BTreeMap<String, usize> {
    distribution_on(host, VmId::FIRST, n, headers)
}

/// [`distribution`] on worker `vm`.
pub fn distribution_on(
    host: &Host,
    vm: VmId,
    n: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let c = route_once_on(host, vm, headers).unwrap_or_else(|| "none".into());
        *m.entry(c).or_default() += 1;
    }
    m
}

/// The one pending pull whose `:path` starts with `path` (`/v1/config`, `/v1/state`).
pub fn pending_pull(host: &Host, path: &str) -> HttpCallRequest {
    let calls: Vec<HttpCallRequest> = host
        .pending_http_calls()
        .into_iter()
        .filter(|c| c.header(":path").is_some_and(|p| p.starts_with(path)))
        .collect();
    assert_eq!(calls.len(), 1, "exactly one pull of {path}: {calls:?}");
    calls.into_iter().next().expect("one call")
}

pub fn share(d: &BTreeMap<String, usize>, cluster: &str) -> f64 {
    let total: usize = d.values().sum();
    d.get(cluster).copied().unwrap_or(0) as f64 / total.max(1) as f64
}
