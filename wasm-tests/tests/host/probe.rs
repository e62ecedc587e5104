//! The probe guest exercises the hostcalls the plugin relies on.

use std::time::{Duration, UNIX_EPOCH};

use fleetgate_wasm_tests::{properties, Action, Host, LogLevel, Module, Target};

#[test]
fn set_header_and_clear_route_cache_are_seen_by_the_host() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "upstream=member-a").unwrap();
        let d = host.request().path("/api").send();
        assert_eq!(
            d.request_header("x-fleetgate-upstream").as_deref(),
            Some("member-a"),
            "{target:?}"
        );
        assert_eq!(d.request_header("x-probe-clear").as_deref(), Some("ok"));
        assert_eq!(d.route_cache_clears(), 1);
        d.respond(200).finish();
    }
}

#[test]
fn clear_route_cache_is_not_found_on_old_envoy() {
    let host = Host::builder(&Module::probe(Target::Wasip1))
        .without_clear_route_cache()
        .build()
        .unwrap();
    let d = host.request().send();
    assert_eq!(
        d.request_header("x-probe-clear").as_deref(),
        Some("NotFound")
    );
    assert_eq!(d.route_cache_clears(), 0);
    assert_eq!(d.foreign_calls(), vec!["clear_route_cache".to_owned()]);
}

#[test]
fn response_code_and_flags_properties_reach_the_guest() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "").unwrap();
        let d = host.request().send();
        d.respond(503).flags(0x21).finish();
        assert_eq!(
            d.response_header("x-probe-code").as_deref(),
            Some("503"),
            "{target:?}"
        );
        assert_eq!(d.response_header("x-probe-flags").as_deref(), Some("0x21"));
    }
}

#[test]
fn absent_properties_are_not_found_and_set_ones_are_read() {
    let host = Host::new(&Module::probe(Target::Unknown), "").unwrap();
    let d = host.request().send();
    assert_eq!(
        d.request_header("x-probe-cluster").as_deref(),
        Some("absent")
    );

    host.set_property("xds.cluster_name", properties::string("outbound|80||shop"));
    let d = host.request().send();
    assert_eq!(
        d.request_header("x-probe-cluster").as_deref(),
        Some("outbound|80||shop")
    );

    let d = host
        .request()
        .property("xds.cluster_name", properties::string("per-request"))
        .send();
    assert_eq!(
        d.request_header("x-probe-cluster").as_deref(),
        Some("per-request")
    );
}

#[test]
fn current_time_follows_the_simulated_clock() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "").unwrap();
        let start = host
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string();
        assert_eq!(
            host.request().send().request_header("x-probe-now"),
            Some(start)
        );

        host.advance(Duration::from_secs(5));
        let later = host
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string();
        assert_eq!(
            host.request().send().request_header("x-probe-now"),
            Some(later),
            "{target:?}"
        );
    }
}

#[test]
fn metrics_are_defined_incremented_and_readable_by_name() {
    let host = Host::new(&Module::probe(Target::Wasip1), "").unwrap();
    let vm2 = host.add_vm().unwrap();
    host.request().send();
    let d = host.request().vm(vm2).send();
    assert_eq!(
        d.request_header("x-probe-requests").as_deref(),
        Some("2"),
        "both VMs share the counter"
    );
    assert_eq!(host.metric("probe_requests_total"), Some(2));
    assert_eq!(host.metric("probe_config_bytes"), Some(0));
    assert_eq!(host.metric("no_such_metric"), None);
    assert!(host
        .metrics()
        .iter()
        .any(|(name, _)| name == "probe_ticks_total"));
}

#[test]
fn send_http_response_is_captured_and_runs_through_the_response_path() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "").unwrap();
        let d = host
            .request()
            .header("x-probe", "deny")
            .body("ignored")
            .send();
        assert_eq!(d.action(), Action::Pause);
        assert_eq!(
            d.body_action(),
            None,
            "no body callback after a local response"
        );
        let reply = d.local_response().expect("a local response");
        assert_eq!(reply.status, 403);
        assert_eq!(reply.header("x-probe-denied"), Some("1"));
        assert_eq!(reply.body, b"denied");
        d.finish();
        assert_eq!(d.response_header("x-probe-code").as_deref(), Some("403"));
    }
}

#[test]
fn logs_are_captured_with_their_level() {
    let host = Host::new(&Module::probe(Target::Wasip1), "upstream=x").unwrap();
    assert!(host.logged(LogLevel::Info, "configured: upstream=x"));
    assert!(host
        .logs()
        .iter()
        .any(|line| line.level == LogLevel::Debug && line.message == "vm started"));
}

#[test]
fn a_rejected_configuration_is_reported_and_a_bad_update_keeps_the_old_one() {
    let host = Host::new(&Module::probe(Target::Wasip1), "reject").unwrap();
    assert!(!host.configured());
    assert!(host.logged(LogLevel::Error, "configuration rejected"));
    assert!(host.request().try_send().is_err());

    let host = Host::new(&Module::probe(Target::Unknown), "upstream=old").unwrap();
    assert!(!host.configure("reject"));
    assert_eq!(
        host.request()
            .send()
            .request_header("x-fleetgate-upstream")
            .as_deref(),
        Some("old")
    );
    assert!(host.configure("upstream=new"));
    assert_eq!(
        host.request()
            .send()
            .request_header("x-fleetgate-upstream")
            .as_deref(),
        Some("new")
    );
}
