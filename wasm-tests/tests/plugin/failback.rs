//! Failback timers outlive the plugin instance: Envoy builds a new root context (maybe a new
//! VM) for every filter config update, and a member mid-hold-down must not jump to full weight
//! there. The timers travel in the shared-data ledger; only matching backends carry them.

use std::time::Duration;

use fleetgate_wasm_tests::SharedData;

use super::*;

const LEDGER_KEY: &str = "fleetgate/failback";

/// hz-a primary, hz-b standby, failback 10 s hold + 20 s ramp; `a_ready` 0 takes hz-a out.
fn standby(route: &str, a_ready: u32) -> Value {
    let mut c = config(
        &["hz-a", "hz-b"],
        json!({"mode": "active-standby", "order": ["hz-a", "hz-b"],
               "failback": {"hold_seconds": 10, "ramp_seconds": 20}}),
    );
    c["routes"][0]["name"] = json!(route);
    c["routes"][0]["backends"][0]["ready"] = json!(a_ready);
    c
}

/// hz-a's share of `n` requests on each VM.
fn shares_of_a(h: &Host, vms: &[VmId], n: usize) -> Vec<f64> {
    vms.iter()
        .map(|&vm| share(&distribution_on(h, vm, n, &[]), "hz-a"))
        .collect()
}

fn assert_near(got: &[f64], want: f64, when: &str) {
    for (vm, s) in got.iter().enumerate() {
        assert!((s - want).abs() < 0.05, "{when}, VM {vm}: hz-a share {s}");
    }
}

fn host_sharing(shared: &SharedData, cfg: &Value) -> Host {
    let h = Host::builder(&Module::plugin_wasip1())
        .config(cfg.to_string())
        .shared_data(shared.clone())
        .build()
        .expect("host starts");
    assert!(h.configured(), "config rejected: {:?}", h.logs());
    h
}

#[test]
fn a_plugin_instance_configured_mid_hold_down_keeps_the_hold_down_and_the_ramp() {
    let h = host(&standby("default/shop", 2));
    let vm2 = h.add_vm().unwrap();
    let both = [VmId::FIRST, vm2];
    assert_near(&shares_of_a(&h, &both, 100), 1.0, "at first");
    // Each config update is a new root context in every VM: no config in memory before it.
    assert!(h.configure(standby("default/shop", 0).to_string()));
    assert_near(&shares_of_a(&h, &both, 100), 0.0, "hz-a down");
    h.advance(Duration::from_secs(60));
    assert!(h.configure(standby("default/shop", 2).to_string()));
    let back = h.shared_data(LEDGER_KEY).expect("ledger written");
    assert_eq!(back.0.len(), 4 + 16, "one ramping backend: {back:?}");
    h.advance(Duration::from_secs(5));
    // Mid-hold-down: another update, and a worker that starts now (adopts with no predecessor
    // in memory, after the others did).
    assert!(h.configure(standby("default/shop", 3).to_string()));
    let vm3 = h.add_vm().unwrap();
    let all = [VmId::FIRST, vm2, vm3];
    assert_eq!(h.shared_data(LEDGER_KEY), Some(back), "read, not rewritten");
    h.advance(Duration::from_secs(3));
    assert_near(&shares_of_a(&h, &all, 300), 0.0, "8 s into the 10 s hold");
    h.advance(Duration::from_secs(7));
    assert_near(
        &shares_of_a(&h, &all, 2_000),
        0.25,
        "5 s into the 20 s ramp",
    );
    h.advance(Duration::from_secs(10));
    assert_near(&shares_of_a(&h, &all, 2_000), 0.75, "15 s into the ramp");
    h.advance(Duration::from_secs(6));
    assert_near(&shares_of_a(&h, &all, 300), 1.0, "after the ramp");
}

#[test]
fn a_fresh_fleet_or_a_record_of_other_routes_starts_no_hold_down() {
    let shared = SharedData::new();
    // No record: the first config has hz-a usable and serves it at once.
    let first = host_sharing(&shared, &standby("default/shop", 2));
    assert_near(
        &shares_of_a(&first, &[VmId::FIRST], 200),
        1.0,
        "fresh fleet",
    );
    // Another fleetgate leaves a record where hz-a of another route is down...
    let other = host_sharing(&shared, &standby("default/orders", 0));
    let record = first.shared_data(LEDGER_KEY).expect("ledger written").0;
    assert_eq!(record.len(), 4 + 16, "one unusable backend: {record:?}");
    // ...which does not hold down hz-a of this route in a new instance.
    let again = host_sharing(&shared, &standby("default/shop", 2));
    assert_near(
        &shares_of_a(&again, &[VmId::FIRST], 200),
        1.0,
        "record of other keys",
    );
    // The same key down in the record does: the backend came back.
    assert!(other.configure(standby("default/shop", 0).to_string()));
    let back = host_sharing(&shared, &standby("default/shop", 2));
    assert_near(
        &shares_of_a(&back, &[VmId::FIRST], 200),
        0.0,
        "matching key",
    );
}

#[test]
fn a_garbage_ledger_reads_as_none_and_is_replaced() {
    let shared = SharedData::new();
    let seed = host_sharing(&shared, &standby("default/shop", 0));
    seed.set_shared_data(LEDGER_KEY, b"FBL1 not a record");
    let h = host_sharing(&shared, &standby("default/shop", 2));
    assert_near(
        &shares_of_a(&h, &[VmId::FIRST], 200),
        1.0,
        "no record to carry",
    );
    assert_eq!(
        h.shared_data(LEDGER_KEY).unwrap().0,
        b"FBL1",
        "rewritten: nothing down or ramping"
    );
}
