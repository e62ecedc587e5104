//! The plugin's per-request cost in the test host against the noop filter, in the same run, for
//! configs of 10, 1,000 and 10,000 routes; config parse+index time; linear memory.
//! `cargo bench -p fleetgate-wasm-tests --bench plugin`; `cargo test --benches` runs a smoke mode.

use std::time::{Duration, Instant};

use fleetgate_wasm_tests::bench::{exchange_at, memory_bytes, time_requests};
use fleetgate_wasm_tests::{Host, LogLevel, Module};
use serde_json::{json, Value};

/// `n` routes, one host each, three clusters, a pin and a canary on every route: the work per
/// request is that of a realistic route, whatever `n`.
fn config(n: usize) -> Value {
    let clusters = ["hz-a", "hz-b", "hz-c"];
    let routes: Vec<Value> = (0..n)
        .map(|i| {
            let backends: Vec<Value> = clusters
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    json!({"cluster": c, "upstream": format!("outbound|80|{c}|svc{i}.default.svc.cluster.local"), "ready": k + 1})
                })
                .collect();
            json!({
                "name": format!("default/svc{i}"),
                "hosts": [format!("svc{i}.example.com")],
                "paths": [{"type": "Prefix", "path": "/"}, {"type": "Prefix", "path": "/api/v1"}],
                "backends": backends,
                "pins": [{"when": {"header": "x-env", "match": {"exact": "gray"}}, "cluster": "hz-b"}],
                "canaries": [{"name": format!("default/svc{i}-v2"), "when": [{"header": "x-canary", "match": {"regex": "always|v2"}}],
                              "backends": [{"cluster": "hz-a", "upstream": format!("outbound|80|hz-a|svc{i}-v2.default.svc.cluster.local")}]}],
            })
        })
        .collect();
    json!({"version": 1, "clusters": clusters.iter().map(|c| json!({"id": c})).collect::<Vec<_>>(), "routes": routes})
}

fn exchange(authority: String) -> impl Fn(&Host) -> anyhow::Result<()> {
    move |host| exchange_at(host, &authority, "/api/v1/cart?item=42")
}

fn host(module: &Module, cfg: &str) -> anyhow::Result<Host> {
    let host = Host::builder(module)
        .config(cfg)
        .log_level(LogLevel::Warn)
        .build()?;
    anyhow::ensure!(host.configured(), "config rejected: {:?}", host.logs());
    Ok(host)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (warmup, requests, rounds) = if full {
        (2_000, 30_000, 5)
    } else {
        (10, 100, 1)
    };
    let plugin = Module::plugin_wasip1();
    let noop = Module::noop_wasip1();
    println!(
        "module compile: plugin {:?}, noop {:?}",
        plugin.compile_time(),
        noop.compile_time()
    );
    println!("routes | plugin ns/req | noop ns/req | ratio | config load in VM | native parse+index | plugin memory");
    // The smoke mode (`cargo test --benches`, a debug build) proves the bench runs, on one size.
    let sizes: &[usize] = if full { &[10, 1_000, 10_000] } else { &[10] };
    for &n in sizes {
        let cfg = config(n).to_string();
        let authority = format!("svc{}.example.com", n / 2);
        let started = Instant::now();
        let plugin_host = host(&plugin, &cfg)?;
        let vm_load = started.elapsed();
        let noop_host = host(&noop, "{}")?;
        // Interleave rounds so drift on a noisy machine hits both alike.
        let (mut p, mut q) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            p.push(
                time_requests(&plugin_host, warmup, requests, exchange(authority.clone()))?
                    .ns_per_request,
            );
            q.push(
                time_requests(&noop_host, warmup, requests, exchange(authority.clone()))?
                    .ns_per_request,
            );
        }
        p.sort_by(f64::total_cmp);
        q.sort_by(f64::total_cmp);
        let (p, q) = (p[p.len() / 2], q[q.len() / 2]);
        let parse = median(
            (0..rounds.max(3))
                .map(|_| {
                    let t = Instant::now();
                    let parsed = fleetgate_plugin::config::parse(cfg.as_bytes());
                    let d = t.elapsed();
                    assert!(parsed.is_ok());
                    d
                })
                .collect(),
        );
        let memory = memory_bytes(&plugin, &cfg, |h| exchange(authority.clone())(h))?;
        println!(
            "{n:>6} | {p:>13.0} | {q:>11.0} | {:>5.2} | {:>16.1?} | {:>18.1?} | {} KiB",
            p / q,
            vm_load,
            parse,
            memory / 1024
        );
    }
    Ok(())
}
