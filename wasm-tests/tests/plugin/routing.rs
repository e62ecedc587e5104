//! Host/path precedence, pins, route-by-header, canaries, stickiness, mirroring, 503/panic.

use fleetgate_wasm_tests::Target;
use serde_json::json;

use super::*;

#[test]
fn sets_the_upstream_header_and_clears_the_route_cache_on_both_targets() {
    for target in Target::ALL {
        let h = host_on(target, &config(&["hz-a"], json!({})));
        let s = get(&h, "/", &[]);
        assert_eq!(
            s.request_header(UPSTREAM_HEADER),
            Some(up("hz-a")),
            "{target:?}"
        );
        assert_eq!(s.route_cache_clears(), 1);
        s.respond(200).finish();
        assert_eq!(
            s.response_header("x-fleetgate-decision").as_deref(),
            Some("cluster=hz-a; reason=weight; route=default/shop")
        );
        assert_eq!(
            h.metric("fleetgate_requests_total.cluster.hz-a.reason.weight"),
            Some(1)
        );
    }
}

#[test]
fn older_envoy_without_clear_route_cache_still_routes() {
    let h = host(&config(&["hz-a"], json!({})));
    h.set_clear_route_cache_supported(false);
    let s = get(&h, "/", &[]);
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-a")));
    s.respond(200).finish();
}

#[test]
fn ingress_host_and_path_precedence() {
    let route = |name: &str, hosts: serde_json::Value, paths: serde_json::Value, c: &str| {
        json!({"name": name, "hosts": hosts, "paths": paths,
               "backends": [{"cluster": c, "upstream": up(c)}]})
    };
    let cfg = json!({"version": 1, "clusters": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
    "routes": [
        route("root", json!(["shop.example.com"]), json!([{"type": "Prefix", "path": "/"}]), "a"),
        route("api", json!(["shop.example.com"]), json!([{"type": "Prefix", "path": "/api"}]), "b"),
        route("exact", json!(["shop.example.com"]), json!([{"type": "Exact", "path": "/api/login"}]), "c"),
        route("wild", json!(["*.example.com"]), json!([]), "d"),
    ]});
    let h = host(&cfg);
    for (authority, path, want) in [
        ("shop.example.com", "/", Some("a")),
        ("shop.example.com", "/apix", Some("a")),
        ("shop.example.com", "/api/v1?q=1", Some("b")),
        ("shop.example.com", "/api/login", Some("c")),
        ("shop.example.com:443", "/api/login/", Some("b")),
        ("m.example.com", "/api", Some("d")),
        ("a.b.example.com", "/", None),
        ("example.org", "/", None),
    ] {
        let s = h.request().authority(authority).path(path).send();
        let got = s.request_header(UPSTREAM_HEADER).map(|u| cluster_of(&u));
        assert_eq!(got.as_deref(), want, "{authority}{path}");
        s.respond(200).finish();
    }
}

#[test]
fn a_spoofed_upstream_header_is_removed_when_no_route_matches() {
    let h = host(&config(&["hz-a"], json!({})));
    let s = h
        .request()
        .authority("other.example.org")
        .path("/")
        .header(UPSTREAM_HEADER, "admin-cluster")
        .header("x-fleetgate-mirror", "evil")
        .send();
    assert_eq!(s.request_header(UPSTREAM_HEADER), None);
    assert_eq!(s.request_header("x-fleetgate-mirror"), None);
    s.respond(404).finish();
    // ...and overwritten when one does.
    let s = get(&h, "/", &[(UPSTREAM_HEADER, "admin-cluster")]);
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-a")));
    s.respond(200).finish();
}

#[test]
fn header_cookie_and_query_pins_and_their_fallback() {
    let pins = json!({"pins": [
        {"when": {"header": "x-env", "match": {"exact": "gray"}}, "cluster": "hz-b"},
        {"when": {"cookie": "site", "match": "always"}, "cluster": "hz-b"},
        {"when": {"query": "cluster", "match": {"regex": "hz-b|b"}}, "cluster": "hz-b"}
    ]});
    let h = host(&config(&["hz-a", "hz-b"], pins.clone()));
    for _ in 0..20 {
        assert_eq!(
            route_once(&h, &[("x-env", "gray")]).as_deref(),
            Some("hz-b")
        );
        assert_eq!(
            route_once(&h, &[("cookie", "a=1; site=always")]).as_deref(),
            Some("hz-b")
        );
    }
    let s = get(&h, "/items?cluster=b", &[]);
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-b")));
    s.respond(200).finish();
    assert!(s
        .response_header("x-fleetgate-decision")
        .unwrap()
        .contains("reason=pin"));

    // hz-b down: the pin falls back to the policy (reason failover).
    let mut cfg = config(&["hz-a", "hz-b"], pins);
    cfg["clusters"][1]["state"] = json!("down");
    let h = host(&cfg);
    let s = get(&h, "/", &[("x-env", "gray")]);
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-a")));
    s.respond(200).finish();
    assert!(s
        .response_header("x-fleetgate-decision")
        .unwrap()
        .contains("reason=failover"));
}

#[test]
fn route_by_header_value_names_the_cluster() {
    let h = host(&config(
        &["hz-a", "hz-b"],
        json!({"route_by_header": "x-fleetgate-cluster"}),
    ));
    for c in ["hz-a", "hz-b", "hz-b", "hz-a"] {
        assert_eq!(
            route_once(&h, &[("x-fleetgate-cluster", c)]).as_deref(),
            Some(c)
        );
    }
}

fn canary_cfg(canary: serde_json::Value) -> serde_json::Value {
    let mut c = canary;
    c["name"] = json!("default/shop-v2");
    c["backends"] = json!([{"cluster": "hz-b", "upstream": "v2|hz-b", "ready": 1}]);
    config(&["hz-a", "hz-b"], json!({"canaries": [c]}))
}

#[test]
fn canary_by_header_and_cookie() {
    let h = host(&canary_cfg(json!({"when": [
        {"header": "x-canary", "match": {"regex": "always|v2"}},
        {"cookie": "canary", "match": "always"}
    ]})));
    for headers in [
        vec![("x-canary", "v2")],
        vec![("x-canary", "always")],
        vec![("cookie", "canary=always")],
    ] {
        let s = get(&h, "/", &headers);
        assert_eq!(
            s.request_header(UPSTREAM_HEADER).as_deref(),
            Some("v2|hz-b"),
            "{headers:?}"
        );
        s.respond(200).finish();
    }
    let s = get(&h, "/", &[("x-canary", "v3")]);
    assert_ne!(
        s.request_header(UPSTREAM_HEADER).as_deref(),
        Some("v2|hz-b")
    );
    s.respond(200).finish();
}

#[test]
fn canary_by_weight_takes_its_normalised_share() {
    let h = host(&canary_cfg(json!({"weight": 30})));
    let n = 20_000;
    let canary = (0..n)
        .filter(|_| {
            let s = get(&h, "/", &[]);
            let hit = s.request_header(UPSTREAM_HEADER).as_deref() == Some("v2|hz-b");
            s.respond(200).finish();
            hit
        })
        .count();
    let share = canary as f64 / n as f64;
    assert!((share - 0.30).abs() < 0.015, "canary share {share}");
}

#[test]
fn sticky_cookie_is_set_then_honoured() {
    let h = host(&config(
        &["hz-a", "hz-b"],
        json!({"sticky": {"cookie": "fg", "max_age_seconds": 60}}),
    ));
    let s = get(&h, "/", &[]);
    let first = cluster_of(&s.request_header(UPSTREAM_HEADER).unwrap());
    s.respond(200).finish();
    let cookie = s.response_header("set-cookie").expect("sticky cookie set");
    assert_eq!(cookie, format!("fg={first}; Path=/; Max-Age=60; HttpOnly"));
    for _ in 0..50 {
        let s = get(&h, "/", &[("cookie", &format!("fg={first}"))]);
        assert_eq!(
            cluster_of(&s.request_header(UPSTREAM_HEADER).unwrap()),
            first
        );
        s.respond(200).finish();
        assert_eq!(s.response_header("set-cookie"), None);
    }
}

#[test]
fn mirror_header_is_set_on_the_sampled_share() {
    let h = host(&config(
        &["hz-a"],
        json!({"mirror": {"upstream": "shadow", "percent": 10}}),
    ));
    let n = 20_000;
    let mirrored = (0..n)
        .filter(|_| {
            let s = get(&h, "/", &[]);
            let m = s.request_header("x-fleetgate-mirror");
            s.respond(200).finish();
            match m.as_deref() {
                Some("shadow") => true,
                None => false,
                other => panic!("unexpected mirror header {other:?}"),
            }
        })
        .count();
    let share = mirrored as f64 / n as f64;
    assert!((share - 0.10).abs() < 0.01, "mirror share {share}");
    assert_eq!(h.metric("fleetgate_mirrored_total"), Some(mirrored as u64));
}

#[test]
fn no_usable_cluster_answers_503_or_spreads_in_panic_mode() {
    let mut cfg = config(&["hz-a", "hz-b"], json!({}));
    cfg["clusters"][0]["state"] = json!("down");
    cfg["clusters"][1]["state"] = json!("down");
    let h = host(&cfg);
    let s = get(&h, "/", &[]);
    let reply = s.local_response().expect("local reply");
    assert_eq!(reply.status, 503);
    assert!(
        String::from_utf8_lossy(&reply.body).contains("no healthy cluster for route default/shop")
    );
    assert_eq!(s.request_header(UPSTREAM_HEADER), None);
    s.finish();
    assert_eq!(h.metric("fleetgate_unavailable_total"), Some(1));

    cfg["routes"][0]["when_unavailable"] = json!("panic");
    let h = host(&cfg);
    let d = distribution(&h, 2_000, &[]);
    assert!(share(&d, "hz-a") > 0.4 && share(&d, "hz-b") > 0.4, "{d:?}");
}

#[test]
fn core_routing_is_the_same_on_the_unknown_unknown_build() {
    let pins = json!({"route_by_header": "x-c",
        "pins": [{"when": {"header": "x-env", "match": {"exact": "gray"}}, "cluster": "hz-b"}]});
    for target in Target::ALL {
        let h = host_on(target, &config(&["hz-a", "hz-b"], pins.clone()));
        assert_eq!(
            route_once(&h, &[("x-env", "gray")]).as_deref(),
            Some("hz-b"),
            "{target:?}"
        );
        assert_eq!(
            route_once(&h, &[("x-c", "hz-a")]).as_deref(),
            Some("hz-a"),
            "{target:?}"
        );
        let d = distribution(&h, 4_000, &[]);
        assert!((share(&d, "hz-a") - 0.5).abs() < 0.03, "{target:?}: {d:?}");

        let mut standby = config(
            &["hz-a", "hz-b"],
            json!({"mode": "active-standby", "order": ["hz-b", "hz-a"]}),
        );
        let h = host_on(target, &standby);
        assert_eq!(
            distribution(&h, 100, &[]).get("hz-b"),
            Some(&100),
            "{target:?}"
        );
        standby["clusters"][1]["state"] = json!("down");
        assert!(h.configure(standby.to_string()));
        assert_eq!(
            distribution(&h, 100, &[]).get("hz-a"),
            Some(&100),
            "{target:?}"
        );
    }
}
