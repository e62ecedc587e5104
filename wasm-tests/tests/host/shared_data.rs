//! Shared data is one store for every VM, with Envoy's CAS semantics.

use fleetgate_wasm_tests::{Host, Module, Target};

#[test]
fn a_stale_cas_from_another_vm_is_a_mismatch() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "").unwrap();
        let vm2 = host.add_vm().unwrap();
        host.set_shared_data("hits", b"10");

        // Both workers read the same value and CAS...
        let first = host.request().header("x-probe", "cas").send();
        let second = host.request().vm(vm2).header("x-probe", "cas").send();
        // ...the second writes first and wins; the first's CAS is now stale.
        second.respond(200).finish();
        first.respond(200).finish();

        assert_eq!(
            second.response_header("x-probe-cas").as_deref(),
            Some("ok"),
            "{target:?}"
        );
        assert_eq!(
            first.response_header("x-probe-cas").as_deref(),
            Some("mismatch")
        );
        assert_eq!(host.shared_data("hits").unwrap().0, b"11");
    }
}

#[test]
fn every_successful_write_takes_a_new_global_cas() {
    let host = Host::new(&Module::noop_wasip1(), "").unwrap();
    host.set_shared_data("a", b"1");
    let (_, cas_a) = host.shared_data("a").unwrap();
    host.set_shared_data("b", b"1");
    let (_, cas_b) = host.shared_data("b").unwrap();
    host.set_shared_data("a", b"2");
    let (_, cas_a2) = host.shared_data("a").unwrap();
    assert!(cas_a != 0 && cas_b > cas_a && cas_a2 > cas_b);
}

#[test]
fn a_missing_key_answers_none_and_a_fresh_write_succeeds() {
    let host = Host::new(&Module::probe(Target::Unknown), "").unwrap();
    assert_eq!(host.shared_data("hits"), None);
    let d = host.request().header("x-probe", "cas").send();
    d.respond(200).finish();
    assert_eq!(d.response_header("x-probe-cas").as_deref(), Some("ok"));
    assert_eq!(host.shared_data("hits").unwrap().0, b"1");
}
