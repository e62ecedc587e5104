//! The local fleet demo: three member clusters on loopback, the controller's ADS server, the
//! local gateway programmed by it over xDS with the real plugin, 200 requests/s of traffic, and a timeline of
//! failures: (a) a member scaled to zero, and back (failback hold + ramp); (b) a member killed
//! outright, and (c) brought back. Prints a table line per second and a summary.
//!
//!     cargo run --profile fast -p fleetgate-local-fleet [-- --quick] [--gateway-api] [--rate N]
//!
//! `report` runs the failover report instead (see `fleetgate_local_fleet::report`):
//!
//!     cargo run --profile fast -p fleetgate-local-fleet -- report [--quick] [--out DIR]

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fleetgate_local_fleet::load::{self, LoadSpec, Sample, Tally};
use fleetgate_local_fleet::{figures, report};
use fleetgate_local_fleet::{Fleet, FleetSpec};
use fleetgate_local_gateway::GatewayLog;
use tokio::sync::mpsc;

const MEMBERS: [&str; 3] = ["hz-a", "hz-b", "hz-c"];
/// The fixture with the `active-active` Ingress as a Gateway and an HTTPRoute.
const GATEWAY_API_SCENARIO: &str = "gateway-api-demo";

struct Args {
    quick: bool,
    rate: u32,
    /// Configure the fleet with an HTTPRoute instead of an Ingress.
    gateway_api: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        rate: 200,
        gateway_api: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--gateway-api" => args.gateway_api = true,
            "--rate" => {
                args.rate = it
                    .next()
                    .context("--rate needs a value")?
                    .parse()
                    .context("--rate")?;
            }
            "-h" | "--help" => {
                println!("usage: fleetgate-local-fleet [--quick] [--gateway-api] [--rate REQUESTS_PER_SECOND]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// One step of the timeline.
#[derive(Debug, Clone, Copy)]
enum Step {
    ScaleToZero(&'static str),
    ScaleUp(&'static str),
    Kill(&'static str),
    Revive(&'static str),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::ScaleToZero(m) => write!(f, "(a) scale {m} to 0 replicas (controller: 0 ready)"),
            Step::ScaleUp(m) => write!(f, "(a) scale {m} back up (failback: hold, then ramp)"),
            Step::Kill(m) => write!(
                f,
                "(b) kill {m}'s processes outright (no control-plane change)"
            ),
            Step::Revive(m) => write!(f, "(c) bring {m} back (passive health: probation ramp)"),
        }
    }
}

struct Timeline {
    steps: Vec<(Duration, Step)>,
    total: Duration,
    failback: (u32, u32),
}

fn timeline(quick: bool) -> Timeline {
    let s = Duration::from_secs;
    if quick {
        Timeline {
            steps: vec![
                (s(2), Step::ScaleToZero("hz-c")),
                (s(5), Step::ScaleUp("hz-c")),
                (s(8), Step::Kill("hz-b")),
                (s(11), Step::Revive("hz-b")),
            ],
            total: s(14),
            failback: (1, 2),
        }
    } else {
        Timeline {
            steps: vec![
                (s(5), Step::ScaleToZero("hz-c")),
                (s(13), Step::ScaleUp("hz-c")),
                (s(27), Step::Kill("hz-b")),
                (s(42), Step::Revive("hz-b")),
            ],
            total: s(75),
            failback: (3, 6),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("report") {
        let (plan, out, only) = parse_report_args()?;
        runtime.block_on(report::run_all(&plan, &out, &only))?;
        println!("wrote {}", out.join("report.md").display());
        return Ok(());
    }
    let args = parse_args()?;
    runtime.block_on(demo(args))
}

fn parse_report_args() -> anyhow::Result<(report::Plan, PathBuf, Vec<String>)> {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut plan = if quick {
        report::Plan::quick()
    } else {
        report::Plan::full()
    };
    let mut out = PathBuf::from("target/failover-report");
    let mut only = Vec::new();
    let mut it = std::env::args().skip(2);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {}
            "--out" => out = it.next().context("--out needs a directory")?.into(),
            "--only" => only.push(it.next().context("--only needs a scenario id")?),
            "--rate" => plan.rate = it.next().context("--rate needs a value")?.parse()?,
            "--churn-rate" => {
                plan.churn_rate = it.next().context("--churn-rate needs a value")?.parse()?;
            }
            "-h" | "--help" => {
                println!("usage: fleetgate-local-fleet report [--quick] [--out DIR] [--only ID]... [--rate GETS_PER_S] [--churn-rate GETS_PER_S]  (POSTs: as many; default DIR: target/failover-report)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try report --help)"),
        }
    }
    Ok((plan, out, only))
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let plan = timeline(args.quick);
    let (log_tx, log_rx) = std_mpsc::channel::<GatewayLog>();
    let mut spec = FleetSpec::new(&MEMBERS);
    spec.failback = Some(plan.failback);
    spec.log_sink = Some(log_tx);
    if args.gateway_api {
        spec.scenario = GATEWAY_API_SCENARIO.to_owned();
    }
    println!(
        "fleetgate local fleet: members {} (3 replicas each), controller -> xDS (ADS) -> gateway with the plugin (2 workers); fleet configured by {}",
        MEMBERS.join(", "),
        if args.gateway_api { "an HTTPRoute" } else { "an Ingress" }
    );
    let fleet = Fleet::start(spec).await?;
    println!(
        "gateway http://{}  (try: curl -H 'Host: shop.example.com' -i http://{}/)",
        fleet.addr(),
        fleet.addr()
    );
    println!(
        "traffic: GET {} req/s for {:?}; failback hold {} s, ramp {} s; passive health: plugin defaults",
        args.rate, plan.total, plan.failback.0, plan.failback.1
    );
    println!();
    println!(
        "{:>5} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "t(s)", "req", "err", "retried", "hz-a%", "hz-b%", "hz-c%", "p99(ms)"
    );

    let origin = Instant::now();
    let (sample_tx, mut sample_rx) = mpsc::unbounded_channel::<Sample>();
    let load = tokio::spawn(load::run(
        fleet.addr(),
        LoadSpec::get(args.rate, plan.total),
        origin,
        sample_tx,
    ));

    let mut samples: Vec<Sample> = Vec::new();
    let mut second: Vec<Sample> = Vec::new();
    let mut steps = plan.steps.iter().peekable();
    let mut events: Vec<(Duration, Step)> = Vec::new();
    let mut next_print = Duration::from_secs(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let mut load_done = false;
    loop {
        tokio::select! {
            sample = sample_rx.recv(), if !load_done => match sample {
                Some(sample) => { second.push(sample); continue; }
                None => load_done = true,
            },
            _ = ticker.tick() => {}
        }
        let now = origin.elapsed();
        while let Some((at, step)) = steps.peek().copied() {
            if now < *at {
                break;
            }
            steps.next();
            println!("----- t={:>5.1}s {step}", now.as_secs_f64());
            events.push((now, *step));
            match *step {
                Step::ScaleToZero(m) => fleet.scale_to_zero(m, Duration::from_millis(500)).await?,
                Step::ScaleUp(m) => fleet.scale_up(m)?,
                Step::Kill(m) => fleet.kill(m)?,
                Step::Revive(m) => fleet.revive(m)?,
            }
        }
        for line in log_rx.try_iter() {
            if line.message.contains("config accepted") && line.worker != 0 {
                continue;
            }
            println!("      plugin[w{}] {}", line.worker, line.message);
        }
        if now >= next_print || load_done {
            print_second(next_print, &second);
            samples.append(&mut second);
            next_print += Duration::from_secs(1);
        }
        if load_done {
            break;
        }
    }
    load.await?;
    summary(&samples, &events);
    fleet.gateway.shutdown()?;
    Ok(())
}

fn print_second(t: Duration, samples: &[Sample]) {
    let tally = Tally::of(samples);
    let refs: Vec<&Sample> = samples.iter().collect();
    let p99 = figures::latency_percentile(&refs, 99);
    println!(
        "{:>5} {:>5} {:>5} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>7.1}",
        t.as_secs(),
        tally.total,
        tally.failed,
        tally.retried,
        tally.share("hz-a"),
        tally.share("hz-b"),
        tally.share("hz-c"),
        p99.as_secs_f64() * 1000.0
    );
}

fn summary(samples: &[Sample], events: &[(Duration, Step)]) {
    let all = Tally::of(samples);
    println!();
    println!(
        "summary: {} requests, {} failed, {} retried on another member",
        all.total, all.failed, all.retried
    );
    for (index, (at, step)) in events.iter().enumerate() {
        let until = events
            .get(index + 1)
            .map_or(Duration::MAX, |(next, _)| *next);
        let phase: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent >= *at && s.sent < until)
            .collect();
        let tally = Tally::of(phase.iter().copied());
        match step {
            Step::ScaleToZero(m) | Step::Kill(m) => {
                // Measure before the dead member's probation probes (ejections last 10 s).
                let window = (*at + Duration::from_secs(8)).min(until);
                let failover = load::failover_time(samples, m, *at, window);
                let last = load::last_sent_to(samples, m, *at, window);
                println!(
                    "  {step}\n      failover to >=99% of new requests on survivors: {} (last request sent to {m}: {}); failed requests: {} of {}; retried: {}",
                    failover.map_or("not reached".to_owned(), |d| format!("{} ms", d.as_millis())),
                    last.map_or("none".to_owned(), |d| format!("+{} ms", d.as_millis())),
                    tally.failed,
                    tally.total,
                    tally.retried
                );
            }
            Step::ScaleUp(m) | Step::Revive(m) => {
                let refs: Vec<&Sample> = samples.iter().collect();
                let fair = 100.0 / MEMBERS.len() as f64;
                let failback = figures::failback(&refs, m, *at, until, fair);
                let (first, full, dips) = (failback.first, failback.full, failback.dips);
                println!(
                    "  {step}\n      first request to {m}: {}; reached its full share: {}; seconds with a share drop > 15 points (flapping): {dips}; failed requests: {} of {}",
                    first.map_or("never".to_owned(), |d| format!("+{:.1} s", d.as_secs_f64())),
                    full.map_or("not within the phase".to_owned(), |d| format!("+{:.1} s", d.as_secs_f64())),
                    tally.failed,
                    tally.total
                );
            }
        }
    }
}
