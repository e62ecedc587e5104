//! Ticks fire without sleeping; HTTP callouts wait in a queue for the test to answer them.

use std::time::Duration;

use fleetgate_wasm_tests::{Action, Host, LogLevel, Module, Target};

#[test]
fn tick_dispatches_a_call_that_the_test_completes() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "tick_ms=1000").unwrap();
        assert_eq!(
            host.tick_period(fleetgate_wasm_tests::VmId::FIRST),
            Some(Duration::from_secs(1))
        );
        assert!(host.pending_http_calls().is_empty());

        assert_eq!(host.tick(), 1);
        let calls = host.pending_http_calls();
        assert_eq!(calls.len(), 1, "{target:?}");
        assert_eq!(calls[0].upstream, "controller");
        assert_eq!(calls[0].header(":path"), Some("/config"));
        assert_eq!(calls[0].timeout, Duration::from_secs(5));

        host.complete_http_call(
            calls[0].id,
            200,
            &[("content-type", "application/json")],
            b"{\"v\":1}",
        );
        assert!(host.pending_http_calls().is_empty());
        assert_eq!(host.shared_data("config").unwrap().0, b"{\"v\":1}");
        assert_eq!(host.metric("probe_config_bytes"), Some(7));
        assert!(host.logged(LogLevel::Info, "controller answered 200"));
    }
}

#[test]
fn advancing_the_clock_fires_due_ticks_in_every_vm() {
    let host = Host::new(&Module::probe(Target::Wasip1), "tick_ms=1000").unwrap();
    host.add_vm().unwrap();
    host.advance(Duration::from_millis(3500));
    assert_eq!(
        host.metric("probe_ticks_total"),
        Some(6),
        "3 ticks x 2 workers"
    );
}

#[test]
fn a_call_past_its_timeout_fails_and_a_failed_call_reaches_the_guest() {
    let host = Host::new(&Module::probe(Target::Unknown), "tick_ms=60000").unwrap();
    host.tick();
    host.advance(Duration::from_secs(6));
    assert!(host.pending_http_calls().is_empty());
    assert_eq!(host.metric("probe_callout_failures_total"), Some(1));

    host.tick();
    let id = host.pending_http_calls()[0].id;
    host.fail_http_call(id);
    assert_eq!(host.metric("probe_callout_failures_total"), Some(2));
}

#[test]
fn a_request_paused_on_a_callout_resumes_when_it_is_answered() {
    for target in Target::ALL {
        let host = Host::new(&Module::probe(target), "").unwrap();
        let d = host.request().header("x-probe", "callout").send();
        assert_eq!(d.action(), Action::Pause);
        assert!(d.paused());
        let call = host.pending_http_calls().pop().expect("the authz call");
        assert_eq!(call.upstream, "authz");
        assert_eq!(call.body, b"who");

        host.complete_http_call(call.id, 204, &[], b"");
        assert!(d.resumed(), "{target:?}");
        assert!(!d.paused());
        assert_eq!(d.request_header("x-probe-authz").as_deref(), Some("204"));
        d.respond(200).finish();
    }
}

#[test]
fn an_unknown_upstream_is_refused_like_envoy() {
    let host = Host::builder(&Module::probe(Target::Wasip1))
        .upstreams(&["controller"])
        .build()
        .unwrap();
    let d = host.request().header("x-probe", "callout").send();
    assert_eq!(d.action(), Action::Continue);
    assert_eq!(
        d.request_header("x-probe-authz").as_deref(),
        Some("BadArgument")
    );
    assert!(host.pending_http_calls().is_empty());
}

#[test]
fn finishing_a_stream_drops_its_pending_callouts() {
    let host = Host::new(&Module::probe(Target::Wasip1), "").unwrap();
    let d = host.request().header("x-probe", "callout").send();
    assert_eq!(host.pending_http_calls().len(), 1);
    d.finish();
    assert!(host.pending_http_calls().is_empty());
}
