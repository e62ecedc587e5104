//! `absent` matchers and the route's fallback service on the real `.wasm`.

use serde_json::json;

use super::*;

#[test]
fn an_absent_header_pins_and_a_present_one_does_not() {
    let h = host(&config(
        &["hz-a", "hz-b"],
        json!({"pins": [{"when": {"header": "x-tenant", "match": "absent"}, "cluster": "hz-b"}],
               "backends": [{"cluster": "hz-a", "upstream": up("hz-a"), "weight": 1},
                            {"cluster": "hz-b", "upstream": up("hz-b"), "weight": 0}]}),
    ));
    for _ in 0..20 {
        assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
        assert_eq!(route_once(&h, &[("x-tenant", "")]).as_deref(), Some("hz-a"));
        assert_eq!(
            route_once(&h, &[("x-tenant", "always")]).as_deref(),
            Some("hz-a")
        );
    }
}

#[test]
fn the_fallback_service_serves_while_the_base_has_nothing_usable() {
    let mut c = config(
        &["hz-a", "hz-b"],
        json!({"fallback": {"name": "default/default-backend",
                            "backends": [{"cluster": "hz-b", "upstream": "fallback-b"}]}}),
    );
    c["routes"][0]["backends"][0]["ready"] = json!(0);
    c["routes"][0]["backends"][1]["ready"] = json!(0);
    let h = host(&c);
    let s = get(&h, "/", &[]);
    assert_eq!(
        s.request_header(UPSTREAM_HEADER).as_deref(),
        Some("fallback-b")
    );
    s.respond(200).finish();
    assert_eq!(
        s.response_header("x-fleetgate-decision").as_deref(),
        Some("cluster=hz-b; reason=fallback; route=default/shop")
    );
    assert_eq!(
        h.metric("fleetgate_requests_total.cluster.hz-b.reason.fallback"),
        Some(1)
    );
    // The fallback's cluster goes down as well: the route answers 503 as configured.
    let mut down = c.clone();
    down["clusters"][1]["state"] = json!("down");
    assert!(h.configure(down.to_string()));
    let s = get(&h, "/", &[]);
    assert_eq!(s.local_response().map(|r| r.status), Some(503));
    s.finish();
}
