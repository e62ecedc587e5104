//! Fault injection: every hostcall the plugin imports answers every error status in every
//! phase, one combination at a time, and the VM never traps: requests still get a decision or
//! pass through, and once the fault is gone the plugin routes as before.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetgate_wasm_tests::faults::{self, Fault, FaultSwitch};
use fleetgate_wasm_tests::{Action, Host, LogLevel, Module, Stream, VmId};
use proxy_wasm_host::abi::v0_2_1::types::Status;
use proxy_wasm_host::abi::v0_2_1::Callback;
use serde_json::json;

use super::*;

const PHASES: [Callback; 7] = [
    Callback::ContextCreate,
    Callback::Configure,
    Callback::Tick,
    Callback::RequestHeaders,
    Callback::ResponseHeaders,
    Callback::Log,
    Callback::HttpCallResponse,
];

const STATUSES: [Status; 5] = [
    Status::BadArgument,
    Status::NotFound,
    Status::InternalFailure,
    Status::Unimplemented,
    Status::ParseFailure,
];

/// Every feature that makes a hostcall: pull (tick, callout), sticky cookie, decision header,
/// mirror, header edits and a rewrite (set, add, remove on both header maps), passive health
/// with a one-failure threshold, and a route with nothing usable; the scenario also sends a
/// request for another host with a spoofed upstream header.
fn busy_config() -> Value {
    let edit = json!({"set": [{"name": "x-s", "value": "1"}],
        "add": [{"name": "x-a", "value": "1"}], "remove": ["x-r"]});
    let mut c = config(
        &["hz-a", "hz-b"],
        json!({"sticky": {"cookie": "fg"}, "mirror": {"upstream": "shadow", "percent": 100},
               "request_headers": edit, "response_headers": edit,
               "rewrite": {"path": {"prefix": "/v2"}}}),
    );
    c["passive_health"] = json!({"failure_threshold": 1});
    c["config_source"] = json!({"upstream": "fleetgate-controller", "poll_ms": 100});
    c["routes"].as_array_mut().unwrap().push(json!({
        "name": "default/down", "hosts": ["down.example.com"],
        "backends": [{"cluster": "hz-a", "upstream": up("hz-a"), "ready": 0}]}));
    c
}

fn flows(s: &Stream) -> bool {
    s.action() == Action::Continue || s.local_response().is_some()
}

/// One combination; `Err` says what went wrong. Answers whether the fault fired.
fn scenario(module: &Module, fault: Fault) -> Result<bool, String> {
    let switch = FaultSwitch::default();
    switch.arm(Some(fault));
    let h = Host::builder(module)
        .config(busy_config().to_string())
        .log_level(LogLevel::Trace)
        .faults(switch.clone())
        .build()
        .map_err(|e| format!("start: {e:#}"))?;
    if !h.configured() {
        // A config it could not read is refused (Envoy then keeps the filter out of the
        // chain, so requests flow without it); the VM must still be alive.
        return match h.poisoned(VmId::FIRST) {
            true => Err("trapped at start".into()),
            false => Ok(switch.fired() > 0),
        };
    }
    h.advance(Duration::from_millis(100));
    h.try_tick().map_err(|e| format!("tick: {e:#}"))?;
    let s = get(&h, "/", &[("cookie", "fg=hz-b")]);
    let routed = flows(&s);
    s.respond(503).finish();
    let s = h.request().authority("down.example.com").path("/").send();
    let refused = flows(&s);
    s.finish();
    // Not ours, with a spoofed upstream header the plugin removes.
    let s = h
        .request()
        .authority("elsewhere.example.com")
        .path("/")
        .header(UPSTREAM_HEADER, "evil")
        .send();
    let passed = s.action() == Action::Continue;
    s.finish();
    for call in h.pending_http_calls() {
        let next = busy_config().to_string();
        h.try_complete_http_call(call.id, 200, &[("etag", "\"r2\"")], next.as_bytes())
            .map_err(|e| format!("callout response: {e:#}"))?;
    }
    if h.poisoned(VmId::FIRST) || !routed || !refused || !passed {
        return Err(format!(
            "trapped or stuck (routed {routed}, 503 {refused}, passed {passed})"
        ));
    }
    // The fault gone, a configured plugin routes again.
    switch.arm(None);
    if h.configured() && route_once(&h, &[]).is_none() {
        return Err("no decision after the fault".into());
    }
    Ok(switch.fired() > 0)
}

#[test]
fn every_hostcall_failing_in_every_phase_never_traps() {
    let bytes = std::fs::read(env!("FLEETGATE_PLUGIN_WASIP1")).expect("plugin .wasm");
    let hostcalls = faults::hostcalls(&bytes).expect("imports");
    assert!(hostcalls.len() >= 15, "{hostcalls:?}");
    let mut failures = Vec::new();
    let mut fired: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for name in &hostcalls {
        let module = Module::plugin_with_faulty_import(name).expect("rewritten plugin");
        for phase in PHASES {
            for status in STATUSES {
                match scenario(&module, Fault { phase, status }) {
                    Ok(true) if status == STATUSES[0] => {
                        fired
                            .entry(name.clone())
                            .or_default()
                            .push(phase_name(phase));
                    }
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{name} {phase:?} {status:?}: {e}")),
                }
            }
        }
    }
    for (name, phases) in &fired {
        println!("{name:<40} failed in {phases:?}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Every hostcall was really failed somewhere (the stub and oracle work for each).
    let silent: Vec<_> = hostcalls
        .iter()
        .filter(|n| !fired.contains_key(*n))
        .collect();
    assert!(silent.is_empty(), "never called under a fault: {silent:?}");
}

fn phase_name(p: Callback) -> &'static str {
    match p {
        Callback::ContextCreate => "context_create",
        Callback::Configure => "configure",
        Callback::Tick => "tick",
        Callback::RequestHeaders => "request_headers",
        Callback::ResponseHeaders => "response_headers",
        Callback::Log => "log",
        Callback::HttpCallResponse => "http_call_response",
        _ => "other",
    }
}

#[test]
fn host_errors_are_counted() {
    let module = Module::plugin_with_faulty_import("proxy_get_header_map_pairs").unwrap();
    let switch = FaultSwitch::default();
    let h = Host::builder(&module)
        .config(busy_config().to_string())
        .faults(switch.clone())
        .build()
        .unwrap();
    switch.arm(Some(Fault {
        phase: Callback::RequestHeaders,
        status: Status::InternalFailure,
    }));
    let s = get(&h, "/", &[]);
    assert!(flows(&s));
    s.respond(200).finish();
    assert!(
        h.metric("fleetgate_host_errors_total").unwrap_or(0) >= 1,
        "{:?}",
        h.metrics()
    );
}
