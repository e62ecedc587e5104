//! Runs one scenario on a fresh local fleet (controller -> xDS -> gateway with the plugin ->
//! members): GET and POST traffic open-loop, the timeline's events on schedule, config churn,
//! and the process's memory, into a [`Recording`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fleetgate_local_gateway::GatewayLog;
use http::Method;

use super::measure;
use super::scenarios::{Action, Churn, Plan, Scenario};
use crate::fleet::{Fleet, FleetSpec};
use crate::load::{self, LoadSpec, Sample};

/// What one run recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub gets: Vec<Sample>,
    pub posts: Vec<Sample>,
    /// When each event really happened (since the traffic started), with its label.
    pub events: Vec<(Duration, String)>,
    /// Process resident set size (KiB) over time, sampled every 500 ms from the traffic's
    /// start to its end.
    pub rss: Vec<(Duration, u64)>,
    /// Config changes published by the churn.
    pub changes: u64,
    /// The plugin's passive-health log lines (ejections, recoveries), when they arrived.
    pub health_log: Vec<(Duration, String)>,
}

/// The resident set size of this process (`VmRSS` of `/proc/self/status`), in KiB: the
/// gateway, members, controller and client all run in it.
pub fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

fn fleet_spec(scenario: &Scenario, plan: &Plan) -> FleetSpec {
    let mut spec = FleetSpec::new(scenario.members);
    spec.scenario = scenario.fixture.to_owned();
    spec.failback = Some(plan.failback);
    spec.passive_health = plan.passive_health;
    spec
}

/// Runs `scenario`; an error means it could not run as planned (a fleet that did not start,
/// an event that failed, such as a port taken while a member was down).
pub async fn record(scenario: &Scenario, plan: &Plan) -> anyhow::Result<Recording> {
    let (log_tx, log_rx) = std_mpsc::channel();
    let mut spec = fleet_spec(scenario, plan);
    spec.log_sink = Some(log_tx);
    let fleet = Fleet::start(spec).await.context("starting the fleet")?;
    let recording = drive(&fleet, scenario, log_rx).await;
    fleet.gateway.shutdown().context("stopping the gateway")?;
    recording
}

async fn drive(
    fleet: &Fleet,
    scenario: &Scenario,
    log: std_mpsc::Receiver<GatewayLog>,
) -> anyhow::Result<Recording> {
    // Memory is part of every row: a system without /proc/self/status cannot run the report.
    rss_kib()?;
    let origin = Instant::now();
    let stop_log = Arc::new(AtomicBool::new(false));
    let health_log = health_lines(log, origin, Arc::clone(&stop_log));
    let traffic = |method: Method| {
        let spec = LoadSpec::get(scenario.rate, scenario.duration).method(method);
        load::spawn_collect(fleet.addr(), spec, origin)
    };
    let (gets, posts) = (traffic(Method::GET), traffic(Method::POST));
    let done = Arc::new(AtomicBool::new(false));
    let rss = tokio::spawn(sample_rss(origin, Arc::clone(&done)));
    let changes = AtomicU64::new(0);
    let churn = async {
        if let Some(churn) = scenario.churn {
            churn_config(fleet, churn, origin, scenario.duration, &changes).await?;
        }
        anyhow::Ok(())
    };
    let (events, churned) = tokio::join!(play(fleet, &scenario.events, origin), churn);
    let (gets, posts) = (gets.await?, posts.await?);
    done.store(true, Ordering::Relaxed);
    let rss = rss.await??;
    stop_log.store(true, Ordering::Relaxed);
    let health_log = health_log
        .join()
        .map_err(|_| anyhow::anyhow!("the log reader panicked"))?;
    churned?;
    Ok(Recording {
        gets,
        posts,
        events: events?,
        rss,
        changes: changes.load(Ordering::Relaxed),
        health_log,
    })
}

/// Reads the gateway's log on a thread of its own (the sink is a blocking channel) and keeps
/// the plugin's passive-health lines, timed on arrival, until `stop`.
fn health_lines(
    log: std_mpsc::Receiver<GatewayLog>,
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Duration, String)>> {
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match log.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if measure::parse_health(&line.message).is_some() => {
                    lines.push((origin.elapsed(), line.message));
                }
                Ok(_) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        lines
    })
}

/// Plays the events on schedule; answers when each really happened.
async fn play(
    fleet: &Fleet,
    events: &[(Duration, Action)],
    origin: Instant,
) -> anyhow::Result<Vec<(Duration, String)>> {
    let mut happened = Vec::new();
    for (at, action) in events {
        tokio::time::sleep_until((origin + *at).into()).await;
        happened.push((origin.elapsed(), action.label()));
        apply(fleet, action)
            .await
            .with_context(|| format!("{} at {:.1} s", action.label(), at.as_secs_f64()))?;
    }
    Ok(happened)
}

async fn apply(fleet: &Fleet, action: &Action) -> anyhow::Result<()> {
    match *action {
        Action::Kill(m) => fleet.kill(m),
        Action::Revive(m) => fleet.revive(m),
        Action::ScaleToZero(m, drain) => fleet.scale_to_zero(m, drain).await,
        Action::ScaleUp(m) => fleet.scale_up(m),
        Action::Lose(m, notice) => fleet.lose(m, notice).await,
        Action::ApiUnreachable(m) => fleet.set_api_reachable(m, false),
        Action::ApiReachable(m) => fleet.set_api_reachable(m, true),
        Action::SetMode(m, mode) => fleet.set_mode(m, mode),
    }
}

/// Alternates the member's ready replicas between all and all but one every period.
async fn churn_config(
    fleet: &Fleet,
    churn: Churn,
    origin: Instant,
    until: Duration,
    changes: &AtomicU64,
) -> anyhow::Result<()> {
    let member = fleet.members.get(churn.member).context("no churn member")?;
    let all = u32::try_from(member.addrs().len()).unwrap_or(u32::MAX);
    let mut tick = tokio::time::interval_at((origin + churn.from).into(), churn.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fewer = true;
    while origin.elapsed() + churn.period < until {
        tick.tick().await;
        let ready = if fewer { all.saturating_sub(1) } else { all };
        fleet.control.set_ready(churn.member, ready)?;
        changes.fetch_add(1, Ordering::Relaxed);
        fewer = !fewer;
    }
    fleet.control.set_ready(churn.member, all)?;
    Ok(())
}

async fn sample_rss(
    origin: Instant,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Vec<(Duration, u64)>> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        samples.push((origin.elapsed(), rss_kib()?));
        if done.load(Ordering::Relaxed) {
            return Ok(samples);
        }
    }
}
