//! The failover report: every failure scenario on a fresh local fleet, through the real path
//! (controller -> xDS -> gateway with the plugin -> members), with GET and POST traffic; one
//! Markdown table (`report.md`) and one SVG timeline per scenario.
//!
//! ```text
//! cargo run --profile fast -p fleetgate-local-fleet -- report [--quick] [--out DIR]
//! ```

pub mod measure;
pub mod run;
pub mod scenarios;
pub mod table;
pub mod timeline;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use measure::Figures;
pub use run::Recording;
pub use scenarios::{Plan, Scenario};

/// A scenario's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ran(Box<Figures>),
    /// It could not run as planned; why.
    NotRun(String),
}

/// One scenario, what it recorded (if it ran) and its outcome.
pub struct Done {
    pub scenario: Scenario,
    pub recording: Option<Recording>,
    pub outcome: Outcome,
}

/// Runs one scenario.
pub async fn run_one(scenario: Scenario, plan: &Plan) -> Done {
    match run::record(&scenario, plan).await {
        Ok(recording) => Done {
            outcome: Outcome::Ran(Box::new(measure::figures(&recording, &scenario, plan))),
            recording: Some(recording),
            scenario,
        },
        Err(error) => Done {
            outcome: Outcome::NotRun(format!("{error:#}")),
            recording: None,
            scenario,
        },
    }
}

/// The timeline file of a scenario in `out`.
pub fn svg_path(out: &Path, scenario: &Scenario) -> PathBuf {
    out.join(format!("{}.svg", scenario.id))
}

/// Writes `out/report.md` and a timeline per scenario that ran.
pub fn write(out: &Path, plan: &Plan, done: &[Done]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for d in done {
        let Some(recording) = &d.recording else {
            continue;
        };
        let samples = measure::all_samples(recording);
        let timeline = timeline::Timeline {
            title: d.scenario.title,
            members: d.scenario.members,
            samples: &samples,
            events: &recording.events,
            health: &recording.health_log,
            end: d.scenario.duration,
        };
        let path = svg_path(out, &d.scenario);
        timeline::draw(&path, &timeline).with_context(|| format!("drawing {}", path.display()))?;
    }
    let path = out.join("report.md");
    std::fs::write(&path, markdown(plan, done))
        .with_context(|| format!("writing {}", path.display()))
}

fn markdown(plan: &Plan, done: &[Done]) -> String {
    let rows: Vec<(&str, &Outcome)> = done
        .iter()
        .map(|d| (d.scenario.title, &d.outcome))
        .collect();
    let mut md = String::from("# Failover report\n\n");
    let _ = writeln!(md, "{}\n", setup(plan));
    md.push_str(&table::render(&rows));
    md.push('\n');
    md.push_str(DEFINITIONS);
    md.push_str("\n## Timelines\n\nShare of the requests sent in each 100 ms that each member answered (lines), failed requests (red crosses), scenario events (dashed lines).\n");
    for d in done.iter().filter(|d| d.recording.is_some()) {
        let _ = write!(
            md,
            "\n### {}\n\n![{}]({}.svg)\n",
            d.scenario.title, d.scenario.title, d.scenario.id
        );
    }
    md
}

/// The report's command line for `plan` (its rates only when not the default).
fn command(plan: &Plan) -> String {
    let default = if plan.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let mut command = String::from(if plan.quick {
        "report --quick"
    } else {
        "report"
    });
    if plan.rate != default.rate {
        let _ = write!(command, " --rate {}", plan.rate);
    }
    if plan.churn_rate != default.churn_rate {
        let _ = write!(command, " --churn-rate {}", plan.churn_rate);
    }
    command
}

fn setup(plan: &Plan) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let command = command(plan);
    let passive = match plan.passive_health {
        None => format!(
            "the plugin's defaults (first ejection {} s, doubling; ramp 10 s)",
            scenarios::DEFAULT_EJECTION_SECONDS
        ),
        Some((ejection, ramp)) => format!("first ejection {ejection} s (doubling), ramp {ramp} s"),
    };
    format!(
        "`cargo run --profile fast -p fleetgate-local-fleet -- {command}` on a machine with {cores} cores. \
         Each scenario runs on a fresh local fleet on 127.0.0.1 (members of 3 replicas, 2 ms service time; \
         the controller's derive and ADS server; the local gateway with the real plugin `.wasm`, 2 workers), \
         with open-loop traffic of {rate} GET/s and {rate} POST/s ({churn} + {churn} under config churn). \
         Failback: hold {hold} s, ramp {ramp} s. Passive health: {passive}. \
         GETs are retried (on another member) on connect failure, reset and 503; POSTs only on connect failure.",
        rate = plan.rate,
        churn = plan.churn_rate,
        hold = plan.failback.0,
        ramp = plan.failback.1,
    )
}

/// How each figure is defined (in the report and, shorter, in the README).
pub const DEFINITIONS: &str = "\
## How each number is measured

- **requests**: GETs and POSTs sent (open loop: on schedule, whatever the latency).
- **>= 99% of new requests avoid the bad member after**: from the event that made the member bad, \
the delay after which every run of 100 consecutive requests (by send time) has at most 1 sent by \
the plugin to that member (its decision header; a request without one counts against). Measured until \
the next event, the end of the traffic or the end of the first passive-health ejection, whichever \
comes first (probation probes after an ejection are by design). `n/a`: no member should be avoided.
- **failed GETs / POSTs**: the client saw no 2xx (an error status, a reset, or its 10 s timeout).
- **retried**: requests the gateway answered after more than one attempt (`x-envoy-attempt-count`).
- **flaps**: per member, its share of the requests sent in each 1 s window (who answered). A \
fall is a window more than 15 points (and more than 4 standard errors of the \
difference, pooled as in a two-proportion test, so sampling noise is none) below the one before; the member has recovered from it once a \
window is as far above its lowest since the fall; a flap is a fall after a recovery (share lost, \
regained, lost again). A failover, a failback ramp or a ramp down in steps is no flap. Summed over \
members.
- **client p50 / p99**: latency percentiles of every request of the scenario, GET and POST, as the \
client measured them (failed ones included).
- **process RSS**: `VmRSS` of `/proc/self/status` at the traffic's start and end. The gateway, the \
members, the controller and the client run in one process, so this is an upper bound of the \
gateway's memory.
";

/// Runs every scenario of `plan` (or those whose id is in `only`, if any) in turn, writes the
/// report into `out`, and answers the results.
pub async fn run_all(plan: &Plan, out: &Path, only: &[String]) -> anyhow::Result<Vec<Done>> {
    let mut done = Vec::new();
    let chosen = scenarios::all(plan)
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|id| id == s.id));
    for scenario in chosen {
        println!(
            "running {} ({:.0} s) ...",
            scenario.title,
            scenario.duration.as_secs_f64()
        );
        let d = run_one(scenario, plan).await;
        if let Outcome::NotRun(why) = &d.outcome {
            println!("  not run: {why}");
        }
        done.push(d);
    }
    write(out, plan, &done)?;
    Ok(done)
}
