//! Smoke test of the README's demo: `fleetgate-local-fleet --quick` runs its whole timeline
//! (about 15 s), prints a line per second and a summary, and no request fails; the same with
//! `--gateway-api` (the fleet configured by an HTTPRoute).

use std::process::Command;

#[test]
fn quick_demo_runs_its_timeline_and_prints_a_summary_without_failed_requests() {
    quick_demo(&[], "an Ingress");
}

/// The same fleet configured by a Gateway and an HTTPRoute instead of the Ingress.
#[test]
fn quick_demo_with_an_httproute_runs_the_same_timeline_without_failed_requests() {
    quick_demo(&["--gateway-api"], "an HTTPRoute");
}

fn quick_demo(args: &[&str], configured_by: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetgate-local-fleet"))
        .arg("--quick")
        .args(args)
        .output()
        .expect("running the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let configured = format!("fleet configured by {configured_by}");
    for needle in [
        configured.as_str(),
        "(a) scale hz-c to 0",
        "(b) kill hz-b",
        "(c) bring hz-b back",
        "summary:",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_default();
    assert!(summary.contains(", 0 failed,"), "{summary}\n{stdout}");
}
