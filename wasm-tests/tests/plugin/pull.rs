//! Config hand-off: the plugin long-polls the controller through `dispatch_http_call`, one
//! worker pulls for all, and a bad or failed pull never replaces the last good config.

use std::time::Duration;

use fleetgate_wasm_tests::LogLevel;
use serde_json::json;

use super::failover::serve;
use super::*;

fn boot() -> Value {
    let mut c = config(&["hz-a", "hz-b"], json!({"route_by_header": "x-c"}));
    c["routes"][0]["backends"][1]["ready"] = json!(0);
    c["config_source"] = json!({"upstream": "fleetgate-controller", "token": "s3cret", "poll_ms": 200, "wait_seconds": 20});
    c
}

#[test]
fn one_worker_long_polls_with_token_and_etag_and_all_workers_adopt() {
    let h = host(&boot());
    let vm2 = h.add_vm().unwrap();
    h.advance(Duration::from_millis(200));
    h.tick();
    let calls = h.pending_http_calls();
    assert_eq!(calls.len(), 1, "one pull for both workers");
    let c = &calls[0];
    assert_eq!(c.upstream, "fleetgate-controller");
    // The routes revision is its ETag: a state-only change does not answer it.
    assert_eq!(c.header(":path"), Some("/v1/config?wait=20&watch=routes"));
    assert_eq!(c.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(c.timeout, Duration::from_secs(25));

    // The controller answers with a config where hz-b is back.
    let mut next = config(&["hz-a", "hz-b"], json!({}));
    next["routes"][0]["backends"][0]["ready"] = json!(0);
    next["revision"] = json!("r7");
    h.complete_http_call(
        c.id,
        200,
        &[("etag", "\"r7\"")],
        next.to_string().as_bytes(),
    );
    assert!(h.logged(
        LogLevel::Info,
        "config accepted from controller (revision r7"
    ));
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    // Worker 2 adopts it from shared data on its next tick, without a second pull.
    h.advance(Duration::from_millis(200));
    h.tick();
    let s = h.request().vm(vm2).authority(HOST_NAME).path("/").send();
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-b")));
    s.respond(200).finish();
    // The next long-poll carries the ETag; the state of these routes is pulled beside it.
    let call = pending_pull(&h, "/v1/config");
    assert_eq!(call.header("if-none-match"), Some("\"r7\""));
    let state = pending_pull(&h, "/v1/state?wait=20");
    assert_eq!(state.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(state.header("if-none-match"), None);
    // 304: nothing changes.
    h.complete_http_call(call.id, 304, &[], b"");
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
}

#[test]
fn a_bad_pulled_config_is_rejected_and_the_last_good_one_stays() {
    let h = host(&boot());
    h.advance(Duration::from_millis(200));
    h.tick();
    let id = h.pending_http_calls()[0].id;
    h.complete_http_call(
        id,
        200,
        &[("etag", "\"bad\"")],
        br#"{"version": 1, "clusters": [], "routes": []}"#,
    );
    assert!(h.logged(
        LogLevel::Error,
        "config rejected from controller: clusters: at least one cluster"
    ));
    assert_eq!(h.metric("fleetgate_config_rejections_total"), Some(1));
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
    // A failed call (no response) and a 401 are logged and retried later, config unchanged.
    h.advance(Duration::from_secs(1));
    h.tick();
    let id = h.pending_http_calls()[0].id;
    h.fail_http_call(id);
    assert!(h.logged(LogLevel::Warn, "config pull failed"));
    h.advance(Duration::from_secs(2));
    h.tick();
    let id = h.pending_http_calls()[0].id;
    h.complete_http_call(id, 401, &[], b"unauthorized");
    assert!(h.logged(LogLevel::Warn, "status \"401\""));
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
}

#[test]
fn pulled_config_takes_effect_on_the_next_request() {
    let h = host(&boot());
    let mut next = boot();
    next.as_object_mut().unwrap().remove("config_source");
    next["routes"][0]["backends"][0]["ready"] = json!(0);
    next["routes"][0]["backends"][1]["ready"] = json!(3);
    serve(&h, &next, "r2");
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
}

#[test]
fn a_pulled_config_may_not_rename_the_cluster_or_mirror_header() {
    let h = host(&boot());
    let vm2 = h.add_vm().unwrap();
    for (field, name) in [
        ("cluster_header", "x-other-upstream"),
        ("mirror_header", "x-other-mirror"),
    ] {
        let mut next = boot();
        next.as_object_mut().unwrap().remove("config_source");
        next[field] = json!(name);
        serve(&h, &next, &format!("rename-{field}"));
        assert!(
            h.logged(
                LogLevel::Error,
                &format!("config rejected from controller: {field}: \"{name}\" differs")
            ),
            "{:?}",
            h.logs()
        );
        // Still routed with the static config's header, by both workers.
        assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
        let s = h.request().vm(vm2).authority(HOST_NAME).path("/").send();
        assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-a")));
        assert_eq!(s.request_header(name), None);
        s.respond(200).finish();
        h.advance(Duration::from_secs(2));
    }
    // A worker that finds such a config in shared data (another gateway build wrote it) refuses
    // it as well.
    let mut renamed = boot();
    renamed["cluster_header"] = json!("x-other-upstream");
    let record = format!("shared-rename\n{renamed}");
    h.set_shared_data("fleetgate/config", record.as_bytes());
    h.set_shared_data("fleetgate/config/etag", b"shared-rename");
    h.clear_logs();
    h.tick();
    assert!(h.logged(
        LogLevel::Error,
        "config rejected from shared data: cluster_header"
    ));
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
}
