//! Routes and state apart, measured in the VM: the plugin pulls the routes once, then state
//! documents (cluster states, ready counts) through its real pull path; the time from the
//! controller's answer to the state in service on the puller, the tick on which a second worker
//! applies it from shared data, and the linear memory a VM needs after each step.

use std::time::{Duration, Instant};

use fleetgate_wasm_tests::bench::memory_bytes;
use fleetgate_wasm_tests::{Host, LogLevel, Module};
use serde_json::{json, Value};

const ROUTES_REVISION: &str = "routes-1";

/// The static config: clusters and where to pull from, no routes.
fn boot(routes: &Value) -> String {
    json!({
        "version": 1,
        "clusters": routes["clusters"],
        "config_source": {"upstream": "fleetgate-controller", "poll_ms": 100},
    })
    .to_string()
}

/// A state document for `routes`: every counted backend gets `ready + bump`; the canaries'
/// uncounted backends stay `-`.
fn state(routes: &Value, revision: &str, bump: u64) -> String {
    let ready: Vec<String> = routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let base = r["backends"].as_array().into_iter().flatten();
            let canaries = r["canaries"].as_array().into_iter().flatten();
            let canary_backends =
                canaries.flat_map(|c| c["backends"].as_array().into_iter().flatten());
            let counts: Vec<String> = base
                .chain(canary_backends)
                .map(|b| match b["ready"].as_u64() {
                    Some(n) => (n + bump).to_string(),
                    None => "-".to_string(),
                })
                .collect();
            counts.join(",")
        })
        .collect();
    let clusters: serde_json::Map<String, Value> = routes["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["id"].as_str().unwrap_or("").to_string(), json!("healthy")))
        .collect();
    json!({"version": 1, "revision": revision, "routes_revision": ROUTES_REVISION,
           "clusters": clusters, "ready": ready.join(";")})
    .to_string()
}

/// Answer the one pending call whose path starts with `path`.
fn answer(h: &Host, path: &str, etag: &str, body: &str) -> anyhow::Result<Duration> {
    let call = h
        .pending_http_calls()
        .into_iter()
        .find(|c| c.header(":path").is_some_and(|p| p.starts_with(path)))
        .ok_or_else(|| anyhow::anyhow!("no pending pull of {path}"))?;
    let started = Instant::now();
    h.try_complete_http_call(
        call.id,
        200,
        &[("etag", &format!("\"{etag}\""))],
        body.as_bytes(),
    )?;
    Ok(started.elapsed())
}

/// Move the clock one poll period (which fires the workers' ticks) and tick once more.
fn tick(h: &Host) -> anyhow::Result<Duration> {
    let started = Instant::now();
    h.try_advance(Duration::from_millis(100))?;
    h.try_tick()?;
    Ok(started.elapsed())
}

/// A host (two workers) that pulled `routes` and is ready to pull a state.
fn pulled(module: &Module, routes: &Value, routes_json: &str) -> anyhow::Result<Host> {
    let h = Host::builder(module)
        .config(boot(routes))
        .log_level(LogLevel::Warn)
        .build()?;
    anyhow::ensure!(h.configured(), "boot config rejected: {:?}", h.logs());
    h.add_vm()?;
    tick(&h)?;
    answer(&h, "/v1/config", ROUTES_REVISION, routes_json)?;
    tick(&h)?;
    Ok(h)
}

/// Apply `rounds` state documents; the median (puller applies, next tick with the second
/// worker applying from shared data).
fn time_updates(h: &Host, routes: &Value, rounds: usize) -> anyhow::Result<(Duration, Duration)> {
    let (mut puller, mut worker) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let doc = state(routes, &format!("s{i}"), (i % 2) as u64);
        puller.push(answer(h, "/v1/state", &format!("s{i}"), &doc)?);
        worker.push(tick(h)?);
    }
    let applied = h.metric("fleetgate_state_accepts_total").unwrap_or(0);
    anyhow::ensure!(
        applied == 2 * rounds as u64,
        "{applied} state accepts for {rounds} updates on 2 workers: {:?}",
        h.logs()
    );
    Ok((median(puller), median(worker)))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn report(module: &Module, routes: &Value, rounds: usize) -> anyhow::Result<()> {
    let routes_json = routes.to_string();
    let n = routes["routes"].as_array().map_or(0, Vec::len);
    let clusters = routes["clusters"].as_array().map_or(0, Vec::len);
    let doc = state(routes, "s0", 0);
    let h = pulled(module, routes, &routes_json)?;
    let (puller, worker) = time_updates(&h, routes, rounds)?;
    println!(
        "state update in VM, {n} routes x {clusters} clusters ({} bytes), median of {rounds}: pull answer -> in service {puller:.2?}; the next tick of both workers (the 2nd applies it from shared data) {worker:.2?}",
        doc.len()
    );
    let after_load = memory_bytes(module, &boot(routes), |h| {
        h.add_vm()?;
        tick(h)?;
        answer(h, "/v1/config", ROUTES_REVISION, &routes_json).map(drop)
    })?;
    let after_state = memory_bytes(module, &boot(routes), |h| {
        h.add_vm()?;
        tick(h)?;
        answer(h, "/v1/config", ROUTES_REVISION, &routes_json)?;
        tick(h)?;
        answer(h, "/v1/state", "s0", &doc)?;
        tick(h).map(drop)
    })?;
    println!(
        "memory per VM, {n} routes pulled: {} pages ({} KiB) after the routes, {} pages ({} KiB) after a state update",
        after_load / 65536,
        after_load / 1024,
        after_state / 65536,
        after_state / 1024
    );
    Ok(())
}
