//! The local gateway's cost and failover figures, in one run (not part of `cargo test`):
//!
//! 1. latency (sequential requests, p50/p99) and throughput (32 concurrent clients) through the
//!    gateway with the plugin vs. the same gateway with the no-op filter; both get requests that
//!    carry the cluster header, so the routing work is the same and the difference is the plugin;
//! 2. failover when a member is killed under 200 and 2,000 requests/s (half GET, half POST):
//!    time until >= 99% of new requests go to survivors, failed requests per method.
//!
//!     cargo bench -p fleetgate-local-fleet --bench gateway --profile fast [-- --quick]

use std::time::{Duration, Instant};

use fleetgate_local_fleet::fleet::{upstream_name, wasm_path};
use fleetgate_local_fleet::load::{self, LoadSpec, Sample, Tally};
use fleetgate_local_fleet::{Fleet, FleetSpec};
use fleetgate_wasm_tests::Module;
use http::Method;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        cost(quick).await?;
        for rate in [200, 2000] {
            failover(rate, quick).await?;
        }
        Ok(())
    })
}

async fn fleet(module: Module) -> anyhow::Result<Fleet> {
    let mut spec = FleetSpec::new(&["hz-a", "hz-b"]);
    spec.wasm = wasm_path(&module);
    spec.service_delay = Duration::ZERO;
    Fleet::start(spec).await
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

struct Cost {
    p50: Duration,
    p99: Duration,
    throughput: f64,
}

async fn measure(fleet: &Fleet, requests: usize, window: Duration) -> anyhow::Result<Cost> {
    let spec =
        LoadSpec::get(1, Duration::ZERO).header("x-fleetgate-upstream", &upstream_name("hz-a"));
    let client = load::client();
    for _ in 0..500 {
        load::send_one(&client, fleet.addr(), &spec, Instant::now()).await;
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sample = load::send_one(&client, fleet.addr(), &spec, Instant::now()).await;
        anyhow::ensure!(sample.ok(), "request failed: {sample:?}");
        latencies.push(sample.latency);
    }
    latencies.sort();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        let spec = spec.clone();
        let addr = fleet.addr();
        clients.spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < window {
                if load::send_one(&client, addr, &spec, started).await.ok() {
                    done += 1;
                }
            }
            done
        });
    }
    let mut done = 0;
    while let Some(n) = clients.join_next().await {
        done += n?;
    }
    Ok(Cost {
        p50: percentile(&latencies, 50),
        p99: percentile(&latencies, 99),
        throughput: done as f64 / started.elapsed().as_secs_f64(),
    })
}

async fn cost(quick: bool) -> anyhow::Result<()> {
    let (requests, window) = if quick {
        (2_000, Duration::from_secs(2))
    } else {
        (10_000, Duration::from_secs(5))
    };
    println!("== cost: {requests} sequential GETs (latency), then 32 clients for {window:?} (throughput); 2 gateway workers, members answer at once");
    let mut rows = Vec::new();
    // Alternate the filters so drift on a noisy machine hits both.
    for round in 0..2 {
        for (name, module) in [
            ("plugin", Module::plugin_wasip1()),
            ("noop", Module::noop_wasip1()),
        ] {
            let fleet = fleet(module).await?;
            let cost = measure(&fleet, requests, window).await?;
            fleet.gateway.shutdown()?;
            println!(
                "  round {round} {name:>6}: p50 {:>7.1} us  p99 {:>7.1} us  throughput {:>7.0} req/s",
                cost.p50.as_secs_f64() * 1e6,
                cost.p99.as_secs_f64() * 1e6,
                cost.throughput
            );
            rows.push((name, cost));
        }
    }
    let best = |name: &str, pick: fn(&Cost) -> f64, min: bool| {
        let values = rows
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, c)| pick(c));
        if min {
            values.fold(f64::MAX, f64::min)
        } else {
            values.fold(0.0, f64::max)
        }
    };
    let p50 = |c: &Cost| c.p50.as_secs_f64() * 1e6;
    let p99 = |c: &Cost| c.p99.as_secs_f64() * 1e6;
    let tput = |c: &Cost| c.throughput;
    println!(
        "  best of rounds: plugin p50 {:.1} us / p99 {:.1} us / {:.0} req/s; noop p50 {:.1} us / p99 {:.1} us / {:.0} req/s",
        best("plugin", p50, true),
        best("plugin", p99, true),
        best("plugin", tput, false),
        best("noop", p50, true),
        best("noop", p99, true),
        best("noop", tput, false),
    );
    println!(
        "  added by the plugin: p50 {:+.1} us, p99 {:+.1} us",
        best("plugin", p50, true) - best("noop", p50, true),
        best("plugin", p99, true) - best("noop", p99, true),
    );
    Ok(())
}

async fn collect(
    fleet: &Fleet,
    spec: LoadSpec,
    origin: Instant,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    load::spawn_collect(fleet.addr(), spec, origin)
}

async fn failover(rate: u32, quick: bool) -> anyhow::Result<()> {
    let duration = if quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(6)
    };
    let kill_at = Duration::from_secs(2);
    let mut spec = FleetSpec::new(&["hz-a", "hz-b"]);
    spec.service_delay = Duration::from_millis(2);
    let fleet = Fleet::start(spec).await?;
    let origin = Instant::now();
    let gets = collect(&fleet, LoadSpec::get(rate / 2, duration), origin).await;
    let posts = collect(
        &fleet,
        LoadSpec::get(rate / 2, duration).method(Method::POST),
        origin,
    )
    .await;
    tokio::time::sleep_until((origin + kill_at).into()).await;
    fleet.kill("hz-b")?;
    let gets = gets.await?;
    let posts = posts.await?;
    let mut all = gets.clone();
    all.extend(posts.iter().cloned());
    let failover = load::failover_time(&all, "hz-b", kill_at, duration);
    let last = load::last_sent_to(&all, "hz-b", kill_at, duration);
    let mut latencies: Vec<Duration> = all.iter().map(|s| s.latency).collect();
    latencies.sort();
    let (g, p) = (Tally::of(&gets), Tally::of(&posts));
    println!(
        "== failover at {rate} req/s ({} GET + {} POST per s), hz-b killed at {kill_at:?}:",
        rate / 2,
        rate / 2
    );
    println!(
        "  >=99% of new requests on survivors after: {} (100% after {}); failed GETs {}/{} (retried {}), failed POSTs {}/{} (retried {}); client p99 {:.1} ms",
        failover.map_or("not reached".to_owned(), |d| format!("{} ms", d.as_millis())),
        last.map_or("0 ms".to_owned(), |d| format!("{} ms", d.as_millis())),
        g.failed,
        g.total,
        g.retried,
        p.failed,
        p.total,
        p.retried,
        percentile(&latencies, 99).as_secs_f64() * 1e3
    );
    fleet.gateway.shutdown()?;
    Ok(())
}
