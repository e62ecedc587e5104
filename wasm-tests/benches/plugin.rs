//! The plugin's per-request cost in the test host against a minimal router (host map, one
//! header) and the noop filter, in the same run, for configs of 10, 1,000 and 10,000 routes;
//! config parse+index time; linear memory; and routes and state apart: a state update (cluster
//! states and ready counts) of the largest config through the pull, with the memory a VM needs
//! after pulling the routes and after a state update.
//! `cargo bench -p fleetgate-wasm-tests --bench plugin`; `cargo test --benches` runs a smoke mode.
//! `-- --config-load` times only the config load of 10,000 routes in the VM, against the module
//! in `FLEETGATE_BASELINE_WASM` too if set (rounds interleaved), to compare two builds.

use std::time::{Duration, Instant};

use fleetgate_wasm_tests::bench::{exchange_at, memory_bytes, time_requests};
use fleetgate_wasm_tests::{Host, LogLevel, Module};
use serde_json::{json, Value};

// Beside this file, not in `benches/`, so cargo does not take it for a bench of its own.
#[path = "plugin/state_update.rs"]
mod state_update;

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

/// The minimal router's config for the same hosts: `host=upstream` lines.
fn router_config(n: usize) -> String {
    (0..n)
        .map(|i| format!("svc{i}.example.com=outbound|80|hz-a|svc{i}.default.svc.cluster.local\n"))
        .collect()
}

/// Median ns/request of each host, rounds interleaved so drift on a noisy machine hits all
/// alike.
fn ns_per_request(
    hosts: &[&Host],
    authority: &str,
    (warmup, requests, rounds): (u64, u64, usize),
) -> anyhow::Result<Vec<f64>> {
    let mut samples = vec![Vec::new(); hosts.len()];
    for _ in 0..rounds {
        for (h, s) in hosts.iter().zip(&mut samples) {
            let m = time_requests(h, warmup, requests, exchange(authority.to_string()))?;
            s.push(m.ns_per_request);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect())
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

/// Median time to start a VM and load `cfg` (instantiation, `on_vm_start`, `on_configure`) for
/// each module, rounds interleaved.
fn config_load(modules: &[&Module], cfg: &str, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = vec![Vec::new(); modules.len()];
    for _ in 0..rounds {
        for (m, s) in modules.iter().zip(&mut samples) {
            let started = Instant::now();
            let h = host(m, cfg)?;
            s.push(started.elapsed());
            drop(h);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

fn config_load_report(full: bool) -> anyhow::Result<()> {
    let plugin = Module::plugin_wasip1();
    let mut modules = vec![&plugin];
    let baseline = match std::env::var_os("FLEETGATE_BASELINE_WASM") {
        Some(path) => Some(Module::from_file(path)?),
        None => None,
    };
    modules.extend(&baseline);
    let n = if full { 10_000 } else { 10 };
    let cfg = config(n).to_string();
    let loads = config_load(&modules, &cfg, if full { 9 } else { 1 })?;
    println!(
        "config load in VM, {n} routes x 3 clusters ({} bytes), median:",
        cfg.len()
    );
    for (m, d) in modules.iter().zip(loads) {
        println!("  {:<40} {d:>10.1?}", m.name());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    if std::env::args().any(|arg| arg == "--config-load") {
        return config_load_report(full);
    }
    let (warmup, requests, rounds) = if full {
        (2_000, 30_000, 5)
    } else {
        (10, 100, 1)
    };
    let plugin = Module::plugin_wasip1();
    let router = Module::router_wasip1();
    let noop = Module::noop_wasip1();
    println!(
        "module compile: plugin {:?}, router {:?}, noop {:?}",
        plugin.compile_time(),
        router.compile_time(),
        noop.compile_time()
    );
    println!("routes | plugin ns/req | router ns/req | noop ns/req | plugin/router | config load in VM | native parse+index | plugin memory");
    // The smoke mode (`cargo test --benches`, a debug build) proves the bench runs, on one size.
    let sizes: &[usize] = if full { &[10, 1_000, 10_000] } else { &[10] };
    for &n in sizes {
        let cfg = config(n).to_string();
        let authority = format!("svc{}.example.com", n / 2);
        let started = Instant::now();
        let plugin_host = host(&plugin, &cfg)?;
        let vm_load = started.elapsed();
        let router_host = host(&router, &router_config(n))?;
        let noop_host = host(&noop, "{}")?;
        let hosts = [&plugin_host, &router_host, &noop_host];
        let ns = ns_per_request(&hosts, &authority, (warmup, requests, rounds))?;
        let (p, r, q) = (ns[0], ns[1], ns[2]);
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
            "{n:>6} | {p:>13.0} | {r:>13.0} | {q:>11.0} | {:>13.2} | {:>17.1?} | {:>18.1?} | {} KiB",
            p / r,
            vm_load,
            parse,
            memory / 1024
        );
    }
    let n = *sizes.last().unwrap_or(&10);
    state_update::report(&plugin, &config(n), if full { 21 } else { 2 })
}
