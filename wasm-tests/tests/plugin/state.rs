//! Routes and state apart: the puller long-polls the state document with its own ETag, every
//! worker applies it from shared data without parsing routes again, and a state for other
//! routes or clusters is refused while the last good state and config keep serving.

use std::time::Duration;

use fleetgate_wasm_tests::{Host, LogLevel, VmId};
use serde_json::json;

use super::*;

const ROUTES: &str = "routes-r1";

/// hz-a usable, hz-b without ready endpoints; pulled from the controller.
fn boot() -> Value {
    let mut c = config(&["hz-a", "hz-b"], json!({}));
    c["routes"][0]["backends"][1]["ready"] = json!(0);
    c["config_source"] = json!({"upstream": "fleetgate-controller", "token": "s3cret", "poll_ms": 200, "wait_seconds": 20});
    c
}

/// A state document for `routes` giving the route's two backends these ready counts.
fn state(rev: &str, routes: &str, a: u32, b: u32) -> Value {
    json!({"version": 1, "revision": rev, "routes_revision": routes,
           "clusters": {"hz-a": "healthy", "hz-b": "healthy"}, "ready": format!("{a},{b}")})
}

/// Two workers; the first pulls the routes (ETag `ROUTES`) and both run them.
fn pulled() -> (Host, VmId) {
    let h = host(&boot());
    let vm2 = h.add_vm().unwrap();
    h.advance(Duration::from_millis(200));
    h.tick();
    let mut routes = boot();
    routes["revision"] = json!("full-1");
    answer(&h, "/v1/config", ROUTES, routes.to_string().as_bytes());
    h.advance(Duration::from_millis(200));
    h.tick();
    (h, vm2)
}

/// Answer the pending pull of `path` with `doc` (200, ETag `etag`).
fn answer(h: &Host, path: &str, etag: &str, doc: &[u8]) {
    let call = pending_pull(h, path);
    h.complete_http_call(call.id, 200, &[("etag", &format!("\"{etag}\""))], doc);
}

fn answer_state(h: &Host, etag: &str, doc: &[u8]) {
    answer(h, "/v1/state", etag, doc);
}

fn lines(h: &Host, needle: &str) -> usize {
    h.logs()
        .iter()
        .filter(|l| l.message.contains(needle))
        .count()
}

#[test]
fn a_state_change_reaches_every_worker_without_parsing_the_routes_again() {
    let (h, vm2) = pulled();
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
    let configs = h.metric("fleetgate_config_accepts_total");
    let parsed = lines(&h, "config accepted");
    // The state pull: its own path, token, no ETag yet.
    let call = pending_pull(&h, "/v1/state");
    assert_eq!(call.header(":path"), Some("/v1/state?wait=20"));
    assert_eq!(call.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(call.header("if-none-match"), None);
    // hz-a loses its endpoints, hz-b gets three.
    answer_state(&h, "s1", state("s1", ROUTES, 0, 3).to_string().as_bytes());
    assert!(
        h.logged(
            LogLevel::Info,
            "state accepted from controller (revision s1, routes revision routes-r1)"
        ),
        "{:?}",
        h.logs()
    );
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    // Worker 2 applies it from shared data on its tick.
    h.advance(Duration::from_millis(200));
    h.tick();
    assert!(h.logged(
        LogLevel::Info,
        "state accepted from shared data (revision s1"
    ));
    assert_eq!(route_once_on(&h, vm2, &[]).as_deref(), Some("hz-b"));
    assert_eq!(h.metric("fleetgate_state_accepts_total"), Some(2));
    // No worker parsed a config for it: no config accepted since.
    assert_eq!(h.metric("fleetgate_config_accepts_total"), configs);
    assert_eq!(lines(&h, "config accepted"), parsed);
    // The next state pull carries the state's ETag, the routes pull still the routes'.
    let next = pending_pull(&h, "/v1/state");
    assert_eq!(next.header("if-none-match"), Some("\"s1\""));
    let routes = pending_pull(&h, "/v1/config");
    assert_eq!(routes.header("if-none-match"), Some("\"routes-r1\""));
}

#[test]
fn a_state_for_other_routes_or_clusters_is_refused_and_the_last_good_one_stays() {
    let (h, vm2) = pulled();
    answer_state(&h, "s1", state("s1", ROUTES, 0, 3).to_string().as_bytes());
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    let mut unknown = state("s3", ROUTES, 3, 0);
    unknown["clusters"]["hz-x"] = json!("down");
    let cases = [
        (
            state("s2", "routes-r0", 3, 0).to_string(),
            "state rejected from controller: routes_revision: the state is for routes revision \"routes-r0\", this plugin runs routes revision \"routes-r1\"; keeping the last good state and config",
        ),
        (
            unknown.to_string(),
            "state rejected from controller: clusters.hz-x: unknown cluster \"hz-x\"",
        ),
        (
            json!({"version": 1, "revision": "s4", "routes_revision": ROUTES,
                   "clusters": {"hz-a": "healthy", "hz-b": "healthy"}, "ready": "3,0,1"})
            .to_string(),
            "state rejected from controller: ready[0]: route \"default/shop\" has 2 backends",
        ),
        ("{\"version\": 1, \"ready\": \"3,".to_string(), "state rejected from controller: "),
    ];
    for (i, (doc, want)) in cases.iter().enumerate() {
        h.advance(Duration::from_secs(1));
        h.tick();
        answer_state(&h, &format!("bad{i}"), doc.as_bytes());
        assert!(h.logged(LogLevel::Error, want), "{want}: {:?}", h.logs());
        assert_eq!(
            h.metric("fleetgate_state_rejections_total"),
            Some(i as u64 + 1)
        );
        assert!(!h.poisoned(VmId::FIRST));
        // Both workers still run routes r1 with state s1.
        assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
        h.advance(Duration::from_millis(200));
        h.tick();
        assert_eq!(route_once_on(&h, vm2, &[]).as_deref(), Some("hz-b"));
    }
    // A good one after all that applies.
    h.advance(Duration::from_secs(1));
    h.tick();
    answer_state(&h, "s5", state("s5", ROUTES, 2, 0).to_string().as_bytes());
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
}

#[test]
fn new_routes_fetch_their_state_at_once_and_a_worker_skips_a_state_for_routes_it_lacks() {
    let (h, vm2) = pulled();
    answer_state(&h, "s1", state("s1", ROUTES, 0, 3).to_string().as_bytes());
    // The routes change (r2).
    let mut routes = boot();
    routes["revision"] = json!("full-2");
    answer(&h, "/v1/config", "routes-r2", routes.to_string().as_bytes());
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"));
    h.advance(Duration::from_millis(200));
    h.tick();
    // The state pull starts over without an ETag: the current state of r2 comes at once.
    assert_eq!(pending_pull(&h, "/v1/state").header("if-none-match"), None);
    answer_state(
        &h,
        "s2",
        state("s2", "routes-r2", 0, 4).to_string().as_bytes(),
    );
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    // Worker 2 took the routes r2 while the shared state was still s1 (for r1): skipped
    // without a rejection; now it applies s2.
    h.advance(Duration::from_millis(200));
    h.tick();
    assert_eq!(route_once_on(&h, vm2, &[]).as_deref(), Some("hz-b"));
    let next = pending_pull(&h, "/v1/state");
    assert_eq!(next.header("if-none-match"), Some("\"s2\""));
    assert!(
        !h.logged(LogLevel::Error, "state rejected"),
        "{:?}",
        h.logs()
    );
}

#[test]
fn without_a_state_path_only_full_configs_are_pulled() {
    let mut boot = boot();
    boot["config_source"]["state_path"] = json!("");
    let h = host(&boot);
    h.advance(Duration::from_millis(200));
    h.tick();
    let call = pending_pull(&h, "/v1/config");
    assert_eq!(call.header(":path"), Some("/v1/config?wait=20"));
    let mut next = boot.clone();
    next["routes"][0]["backends"][0]["ready"] = json!(0);
    next["routes"][0]["backends"][1]["ready"] = json!(1);
    h.complete_http_call(
        call.id,
        200,
        &[("etag", "\"full-2\"")],
        next.to_string().as_bytes(),
    );
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    h.advance(Duration::from_millis(200));
    h.tick();
    let calls = h.pending_http_calls();
    assert_eq!(calls.len(), 1, "no state pull: {calls:?}");
    assert_eq!(calls[0].header("if-none-match"), Some("\"full-2\""));
}

#[test]
fn a_controller_without_a_state_document_leaves_full_configs_in_charge() {
    let (h, _) = pulled();
    let call = pending_pull(&h, "/v1/state");
    h.complete_http_call(call.id, 404, &[], b"no state document\n");
    assert!(h.logged(LogLevel::Info, "serves no state document (404)"));
    for _ in 0..3 {
        h.advance(Duration::from_secs(2));
        h.tick();
        let calls = h.pending_http_calls();
        assert_eq!(calls.len(), 1, "the routes pull only: {calls:?}");
        assert!(calls[0].header(":path").unwrap().starts_with("/v1/config"));
    }
    // Ready counts still arrive, with the full config.
    let mut next = boot();
    next["routes"][0]["backends"][0]["ready"] = json!(0);
    next["routes"][0]["backends"][1]["ready"] = json!(2);
    answer(&h, "/v1/config", "full-2", next.to_string().as_bytes());
    assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    assert!(!h.logged(LogLevel::Warn, "state pull"), "{:?}", h.logs());
}
