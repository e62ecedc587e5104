//! Benchmark helpers: the cost of one request through a module in this host, and the linear
//! memory a VM needs. Used by `benches/` (noop baseline now, the plugin later).

use std::time::{Duration, Instant};

use crate::host::Host;
use crate::module::Module;

/// The timing of a run of requests through one VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Requests timed (after warm-up).
    pub requests: u64,
    /// Wall time of the timed requests.
    pub total: Duration,
    /// Mean nanoseconds per request.
    pub ns_per_request: f64,
}

/// The standard request of the benchmarks: request headers (a few ordinary headers), response
/// headers with status 200, then `on_done`/`on_log`/`on_delete`.
pub fn standard_exchange(host: &Host) -> anyhow::Result<()> {
    exchange_at(host, "shop.example.com", "/api/cart?item=42")
}

/// [`standard_exchange`] for another authority and path.
pub fn exchange_at(host: &Host, authority: &str, path: &str) -> anyhow::Result<()> {
    let stream = host
        .request()
        .authority(authority)
        .path(path)
        .header("x-user", "alice")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .try_send()?;
    stream
        .respond(200)
        .header("content-type", "application/json")
        .try_finish()
}

/// Runs `exchange` `warmup` times untimed, then `requests` times timed, on the same host (and so
/// the same VM when `exchange` uses the first VM).
pub fn time_requests(
    host: &Host,
    warmup: u64,
    requests: u64,
    mut exchange: impl FnMut(&Host) -> anyhow::Result<()>,
) -> anyhow::Result<Measurement> {
    for _ in 0..warmup {
        exchange(host)?;
    }
    let started = Instant::now();
    for _ in 0..requests {
        exchange(host)?;
    }
    let total = started.elapsed();
    let ns_per_request = total.as_nanos() as f64 / requests.max(1) as f64;
    Ok(Measurement {
        requests,
        total,
        ns_per_request,
    })
}

const PAGE: usize = 64 * 1024;

/// The linear memory one VM needs to start with `config` and run `workload`, to the 64 KiB
/// page: the smallest memory limit under which it still succeeds, found by bisection (the
/// `proxy-wasm-host` crate does not expose an instance's memory size; see HOST_NOTES.md).
pub fn memory_bytes(
    module: &Module,
    config: &str,
    workload: impl Fn(&Host) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let fits = |pages: usize| -> bool {
        let Ok(host) = Host::builder(module)
            .config(config)
            .memory_limit(pages * PAGE)
            .build()
        else {
            return false;
        };
        host.configured() && workload(&host).is_ok()
    };
    let mut high = 2048; // 128 MiB, the crate's default limit
    if !fits(high) {
        anyhow::bail!("{} does not run within 128 MiB", module.name());
    }
    let mut low = 0;
    while high - low > 1 {
        let middle = (low + high) / 2;
        if fits(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Ok(high * PAGE)
}
