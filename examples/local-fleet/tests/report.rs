//! The failover report end to end, at the test's lower rate (50 GET/s + 50 POST/s, churn
//! 100 + 100) and the quick timelines (about 100 s in all): every scenario runs through the
//! controller -> xDS -> gateway -> members path, its design bounds hold, and `report.md` and the
//! SVG timelines are written and well-formed. Figures that vary by machine are bounded, not
//! pinned.

use std::path::Path;
use std::time::Duration;

use fleetgate_local_fleet::figures;
use fleetgate_local_fleet::report::measure::{all_samples, Avoid};
use fleetgate_local_fleet::report::table::COLUMNS;
use fleetgate_local_fleet::report::{self, Done, Figures, Outcome, Plan};
use fleetgate_local_fleet::timed::{runtime, serial};

/// Failover and switch bound: new requests leave a dead member within this.
const FAILOVER_BOUND: Duration = Duration::from_secs(1);
/// Growth of the process's RSS allowed over the churn after its first 2 s. A leaked plugin
/// instance per config change (two workers, 50 changes, at least a megabyte of linear memory
/// each) would be several times this.
const CHURN_RSS_MARGIN_KIB: u64 = 20 * 1024;

fn test_plan() -> Plan {
    Plan {
        rate: 50,
        churn_rate: 100,
        ..Plan::quick()
    }
}

fn figures_of(done: &Done) -> Result<&Figures, String> {
    match &done.outcome {
        Outcome::Ran(figures) => Ok(figures.as_ref()),
        Outcome::NotRun(why) => Err(format!("{} did not run: {why}", done.scenario.id)),
    }
}

fn failed_over_within(f: &Figures, bound: Duration) -> Result<(), String> {
    match f.avoid {
        Some(Avoid::After(after)) if after <= bound => Ok(()),
        other => Err(format!("failover {other:?}, want within {bound:?}")),
    }
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// The design's bounds for one scenario.
fn bounds(done: &Done) -> Result<(), String> {
    let f = figures_of(done)?;
    let no_failed_gets = check(f.gets.failed == 0, "failed GETs");
    let no_flaps = check(f.flaps == 0, "flaps");
    match done.scenario.id {
        "kill" | "api-unreachable-pods-die" | "active-standby" => {
            no_failed_gets?;
            no_flaps?;
            failed_over_within(f, FAILOVER_BOUND)
        }
        "scale-to-zero" => {
            // Planned: endpoints leave before the pods stop; nothing fails.
            no_failed_gets?;
            no_flaps?;
            check(f.posts.failed == 0, "failed POSTs")?;
            failed_over_within(f, FAILOVER_BOUND)
        }
        "api-unreachable" => {
            no_failed_gets?;
            no_flaps?;
            check(f.posts.failed == 0, "failed POSTs")?;
            kept_its_share(done)
        }
        "flapping" => {
            no_flaps?;
            failed_over_within(f, FAILOVER_BOUND)
        }
        // Passive health does not act on latency: the slow member keeps its share and the
        // client's p99 shows it.
        "slow" => {
            no_failed_gets?;
            check(
                f.p99 >= Duration::from_millis(500),
                "p99 below the added 500 ms",
            )
        }
        // GETs get a 503 retried on another member; POSTs are not retried.
        "half-broken" => no_failed_gets,
        "config-churn" => {
            no_failed_gets?;
            no_flaps?;
            check(f.posts.failed == 0, "failed POSTs")?;
            flat_memory(done)
        }
        other => Err(format!("no bounds for scenario {other}")),
    }
}

/// The member whose API server is unreachable keeps about its third of the requests.
fn kept_its_share(done: &Done) -> Result<(), String> {
    let recording = done.recording.as_ref().ok_or("no recording")?;
    let (from, until) = (recording.events[0].0, recording.events[1].0);
    let share = figures::decided_share(&all_samples(recording), "hz-b", from, until);
    // A third, with a wide band for 400 requests (sigma about 2.4 points).
    check(
        (20.0..47.0).contains(&share),
        &format!("hz-b's share while unreachable: {share:.1}%"),
    )
}

fn flat_memory(done: &Done) -> Result<(), String> {
    let recording = done.recording.as_ref().ok_or("no recording")?;
    let warm = recording
        .rss
        .iter()
        .find(|(t, _)| *t >= Duration::from_secs(3))
        .ok_or("no RSS sample after 3 s")?
        .1;
    let end = recording.rss.last().ok_or("no RSS sample")?.1;
    eprintln!(
        "churn: RSS {warm} KiB at 3 s, {end} KiB at the end, {} config changes",
        recording.changes
    );
    check(recording.changes >= 40, "fewer than 40 config changes")?;
    check(
        end <= warm + CHURN_RSS_MARGIN_KIB,
        &format!("RSS grew from {warm} to {end} KiB under churn"),
    )
}

fn table_rows(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            l.replace("\\|", "")
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn check_files(out: &Path, done: &[Done]) {
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let rows = table_rows(&markdown);
    assert_eq!(
        rows.len(),
        done.len() + 1,
        "header + a row per scenario:\n{markdown}"
    );
    assert_eq!(rows[0], COLUMNS.to_vec());
    for (row, d) in rows[1..].iter().zip(done) {
        assert_eq!(row.len(), COLUMNS.len(), "{row:?}");
        assert_eq!(row[0], d.scenario.title);
        let requests: Vec<u64> = row[1]
            .split(" + ")
            .map(|n| n.parse().expect("request counts"))
            .collect();
        // Open loop: every scheduled request was sent.
        let planned = (d.scenario.duration.as_secs_f64() * f64::from(d.scenario.rate)).round();
        assert_eq!(requests, vec![planned as u64; 2], "{row:?}");
    }
    for d in done {
        let path = report::svg_path(out, &d.scenario);
        let svg = std::fs::read_to_string(&path).expect("timeline written");
        let doc = roxmltree::Document::parse(&svg).expect("the timeline is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let lines = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "polyline")
            .count();
        assert!(
            lines >= d.scenario.members.len(),
            "{}: {lines} polylines",
            d.scenario.id
        );
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for (_, action) in &d.scenario.events {
            let label = action.label();
            assert!(
                texts.iter().any(|t| t.contains(&label)),
                "{}: no {label:?}",
                d.scenario.id
            );
        }
    }
}

#[test]
fn every_scenario_runs_within_its_design_bounds_and_the_report_is_written() {
    let _serial = serial();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("failover-report");
    let _ = std::fs::remove_dir_all(&out);
    let plan = test_plan();
    let done = runtime()
        .block_on(report::run_all(&plan, &out, &[]))
        .expect("the report is written");
    assert_eq!(done.len(), report::scenarios::all(&plan).len());
    eprintln!(
        "{}",
        std::fs::read_to_string(out.join("report.md")).unwrap_or_default()
    );
    let broken: Vec<String> = done
        .iter()
        .filter_map(|d| bounds(d).err().map(|e| format!("{}: {e}", d.scenario.id)))
        .collect();
    assert!(broken.is_empty(), "bounds not met: {broken:#?}");
    check_files(&out, &done);
}

/// Bad input: a scenario whose fleet cannot start is reported as not run, with why, and gets
/// neither figures nor a timeline.
#[test]
fn a_scenario_that_cannot_start_is_reported_as_not_run_with_why() {
    let _serial = serial();
    let plan = test_plan();
    let mut scenario = report::scenarios::all(&plan).remove(0);
    scenario.fixture = "no-such-fixture";
    let done = runtime().block_on(report::run_one(scenario, &plan));
    let Outcome::NotRun(why) = &done.outcome else {
        panic!("ran: {:?}", done.outcome);
    };
    assert!(
        why.contains("starting the fleet") && why.contains("no-such-fixture"),
        "{why}"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("failover-report-not-run");
    let _ = std::fs::remove_dir_all(&out);
    report::write(&out, &plan, std::slice::from_ref(&done)).expect("written");
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let rows = table_rows(&markdown);
    assert_eq!(rows.len(), 2, "{markdown}");
    assert!(
        rows[1][1].starts_with("not run: starting the fleet"),
        "{:?}",
        rows[1]
    );
    assert!(!report::svg_path(&out, &done.scenario).exists());
}
