//! Passive health shared across worker VMs, hysteresis without flapping, and active-standby
//! failback with hold-down and ramp (configs delivered through the controller pull).

use std::time::Duration;

use fleetgate_wasm_tests::{Host, LogLevel};
use serde_json::json;

use super::*;

/// Route one request on `vm` and answer it with `code`/`flags` if it went to `bad`, else 200.
fn exchange(h: &Host, vm: fleetgate_wasm_tests::VmId, bad: &str, code: u16, flags: u64) -> String {
    let s = h.request().vm(vm).authority(HOST_NAME).path("/").send();
    let c = cluster_of(&s.request_header(UPSTREAM_HEADER).expect("routed"));
    if c == bad {
        s.respond(code).flags(flags).finish();
    } else {
        s.respond(200).finish();
    }
    c
}

#[test]
fn failures_seen_by_one_worker_eject_the_cluster_for_all_workers() {
    let h = host(&config(&["hz-a", "hz-b"], json!({})));
    let vm1 = fleetgate_wasm_tests::VmId(0);
    let vm2 = h.add_vm().unwrap();
    // Worker 1 sees hz-a fail (connection failures) until the ejection.
    let mut sent = 0;
    while h.metric("fleetgate_ejections_total.cluster.hz-a").is_none() {
        exchange(&h, vm1, "hz-a", 503, 0x20);
        sent += 1;
        assert!(sent < 200, "never ejected");
    }
    assert!(h.logged(LogLevel::Warn, "ejected upstream outbound|80|hz-a|"));
    // Worker 2 saw none of it and still sends nothing to hz-a.
    for _ in 0..500 {
        assert_eq!(exchange(&h, vm2, "none", 200, 0), "hz-b");
    }
    // After the ejection (10 s) hz-a ramps back in (probation) and recovers on successes.
    h.advance(Duration::from_secs(15));
    let d = (0..2_000)
        .filter(|_| exchange(&h, vm2, "none", 200, 0) == "hz-a")
        .count();
    assert!(
        d > 0 && d < 1_000,
        "half-way up the ramp hz-a gets a reduced share: {d}/2000"
    );
    h.advance(Duration::from_secs(10));
    for _ in 0..200 {
        exchange(&h, vm1, "none", 200, 0);
    }
    assert_eq!(h.metric("fleetgate_recoveries_total.cluster.hz-a"), Some(1));
    let back = (0..2_000)
        .filter(|_| exchange(&h, vm1, "none", 200, 0) == "hz-a")
        .count();
    assert!(
        (800..1_200).contains(&back),
        "full share again: {back}/2000"
    );
}

#[test]
fn a_failure_on_probation_re_ejects_for_longer() {
    let h = host(&config(&["hz-a", "hz-b"], json!({})));
    let vm = fleetgate_wasm_tests::VmId(0);
    while h.metric("fleetgate_ejections_total.cluster.hz-a").is_none() {
        exchange(&h, vm, "hz-a", 502, 0);
    }
    h.advance(Duration::from_secs(18)); // past the 10 s ejection, on the ramp
    while h.metric("fleetgate_ejections_total.cluster.hz-a") == Some(1) {
        exchange(&h, vm, "hz-a", 502, 0);
    }
    assert!(h.logged(LogLevel::Warn, "for 20000 ms"), "{:?}", h.logs());
}

#[test]
fn alternating_success_and_failure_never_flaps() {
    let h = host(&config(&["hz-a", "hz-b"], json!({})));
    let vm = fleetgate_wasm_tests::VmId(0);
    let mut fail_next = true;
    let mut a = 0;
    for _ in 0..4_000 {
        let s = h.request().vm(vm).authority(HOST_NAME).path("/").send();
        let c = cluster_of(&s.request_header(UPSTREAM_HEADER).unwrap());
        if c == "hz-a" {
            a += 1;
            s.respond(if fail_next { 503 } else { 200 }).finish();
            fail_next = !fail_next;
        } else {
            s.respond(200).finish();
        }
        h.advance(Duration::from_millis(5));
    }
    assert_eq!(h.metric("fleetgate_ejections_total.cluster.hz-a"), None);
    assert!((1_800..2_200).contains(&a), "hz-a kept its share: {a}/4000");
}

#[test]
fn response_flags_count_even_with_a_2xx_code_and_4xx_does_not() {
    let h = host(&config(&["hz-a", "hz-b"], json!({})));
    let vm = fleetgate_wasm_tests::VmId(0);
    for _ in 0..400 {
        exchange(&h, vm, "hz-b", 404, 0);
    }
    assert_eq!(h.metric("fleetgate_ejections_total.cluster.hz-b"), None);
    while h.metric("fleetgate_ejections_total.cluster.hz-b").is_none() {
        exchange(&h, vm, "hz-b", 200, 0x40); // upstream connection termination
    }
}

/// A host whose config comes from the (simulated) controller.
fn pulled_host(first: &serde_json::Value) -> Host {
    let mut boot = first.clone();
    boot["config_source"] =
        json!({"upstream": "fleetgate-controller", "token": "s3cret", "poll_ms": 100});
    host(&boot)
}

/// Answer the pending pull with `cfg` (revision `rev`).
pub fn serve(h: &Host, cfg: &serde_json::Value, rev: &str) {
    h.advance(Duration::from_millis(100));
    h.tick();
    let call = pending_pull(h, "/v1/config");
    let mut cfg = cfg.clone();
    cfg["revision"] = json!(rev);
    h.complete_http_call(
        call.id,
        200,
        &[("etag", &format!("\"{rev}\""))],
        cfg.to_string().as_bytes(),
    );
}

#[test]
fn active_standby_fails_over_then_fails_back_after_hold_with_a_ramp() {
    let standby = |a_ready: u32| {
        let mut c = config(
            &["hz-a", "hz-b"],
            json!({"mode": "active-standby", "order": ["hz-a", "hz-b"],
                   "failback": {"hold_seconds": 10, "ramp_seconds": 20}}),
        );
        c["routes"][0]["backends"][0]["ready"] = json!(a_ready);
        c
    };
    let h = pulled_host(&standby(2));
    assert_eq!(distribution(&h, 200, &[]).get("hz-a"), Some(&200));
    // The primary loses its endpoints: everything to the standby at once.
    serve(&h, &standby(0), "r1");
    assert_eq!(distribution(&h, 200, &[]).get("hz-b"), Some(&200));
    // It comes back: nothing during the hold-down...
    serve(&h, &standby(2), "r2");
    h.advance(Duration::from_secs(5));
    assert_eq!(distribution(&h, 500, &[]).get("hz-b"), Some(&500));
    // ...then a ramp: about 25% five seconds in, 75% at fifteen, all after twenty.
    h.advance(Duration::from_secs(10));
    let quarter = share(&distribution(&h, 4_000, &[]), "hz-a");
    assert!((quarter - 0.25).abs() < 0.04, "ramp at 5 s: {quarter}");
    h.advance(Duration::from_secs(10));
    let three_q = share(&distribution(&h, 4_000, &[]), "hz-a");
    assert!((three_q - 0.75).abs() < 0.04, "ramp at 15 s: {three_q}");
    h.advance(Duration::from_secs(6));
    assert_eq!(distribution(&h, 500, &[]).get("hz-a"), Some(&500));
}
