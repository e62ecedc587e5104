//! The routing engine, natively: every policy of the decision, with seeded randomness and
//! tolerance bands.

use std::collections::HashMap;

use fleetgate_plugin::config::{self, Config};
use fleetgate_plugin::decide::{select, Decision, Reason};
use fleetgate_plugin::failback::{carry_over, Ledger};
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use serde_json::{json, Value};

fn cfg(v: Value) -> Config {
    config::parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

fn clusters(ids: &[&str]) -> Value {
    Value::Array(ids.iter().map(|id| json!({"id": id})).collect())
}

fn backends(spec: &[(&str, Option<u32>, Option<u32>)]) -> Value {
    Value::Array(
        spec.iter()
            .map(|(c, ready, weight)| {
                let mut b = json!({"cluster": c, "upstream": format!("up-{c}")});
                if let Some(r) = ready {
                    b["ready"] = json!(r);
                }
                if let Some(w) = weight {
                    b["weight"] = json!(w);
                }
                b
            })
            .collect(),
    )
}

fn one_route(ids: &[&str], route: Value) -> Config {
    let mut r = json!({"name": "default/shop", "hosts": ["shop.example.com"]});
    for (k, v) in route.as_object().unwrap() {
        r[k] = v.clone();
    }
    cfg(json!({"version": 1, "clusters": clusters(ids), "routes": [r]}))
}

fn healthy(_: usize) -> PassiveState {
    PassiveState::default()
}

fn req() -> SimpleRequest {
    SimpleRequest::new("shop.example.com", "/")
}

fn decide(c: &Config, r: &SimpleRequest, now: u64, rng: &mut fastrand::Rng) -> Decision {
    select(c, r, healthy, now, rng).expect("route matches")
}

fn cluster_of(c: &Config, d: &Decision) -> String {
    d.target
        .as_ref()
        .map_or("503".into(), |t| c.clusters[t.cluster].id.clone())
}

/// Shares per cluster over n seeded draws.
fn shares(c: &Config, r: &SimpleRequest, n: usize, now: u64) -> HashMap<String, f64> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        *counts
            .entry(cluster_of(c, &decide(c, r, now, &mut rng)))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, v)| (k, v as f64 / n as f64))
        .collect()
}

fn assert_share(s: &HashMap<String, f64>, cluster: &str, want: f64) {
    let got = s.get(cluster).copied().unwrap_or(0.0);
    assert!(
        (got - want).abs() <= 0.01,
        "{cluster}: share {got:.4}, want {want:.4} ± 0.01 (all: {s:?})"
    );
}

#[test]
fn weights_follow_ready_endpoints_when_none_are_given() {
    let c = one_route(
        &["a", "b"],
        json!({"backends": backends(&[("a", Some(3), None), ("b", Some(1), None)])}),
    );
    let s = shares(&c, &req(), 100_000, 0);
    assert_share(&s, "a", 0.75);
    assert_share(&s, "b", 0.25);
}

#[test]
fn one_to_one_with_one_dead_sends_everything_to_the_survivor() {
    let c = one_route(
        &["a", "b"],
        json!({"backends": backends(&[("a", Some(2), None), ("b", Some(0), None)])}),
    );
    let s = shares(&c, &req(), 10_000, 0);
    assert_share(&s, "a", 1.0);
    let d = decide(&c, &req(), 0, &mut fastrand::Rng::with_seed(1));
    assert_eq!(d.target.unwrap().reason, Reason::Failover);
}

#[test]
fn explicit_weights_renormalise_over_usable_clusters() {
    let mut v = json!({"version": 1, "clusters": [{"id": "a", "state": "down"}, {"id": "b"}, {"id": "c"}],
        "routes": [{"name": "r", "backends": backends(&[("a", None, Some(50)), ("b", None, Some(30)), ("c", None, Some(20))])}]});
    let c = cfg(v.clone());
    let s = shares(&c, &req(), 100_000, 0);
    assert_share(&s, "b", 0.6);
    assert_share(&s, "c", 0.4);
    // All up: 50/30/20 exactly.
    v["clusters"][0]["state"] = json!("healthy");
    let s = shares(&cfg(v), &req(), 100_000, 0);
    assert_share(&s, "a", 0.5);
    assert_share(&s, "b", 0.3);
    assert_share(&s, "c", 0.2);
}

#[test]
fn unknown_clusters_keep_traffic_but_down_ones_do_not() {
    let c = cfg(
        json!({"version": 1, "clusters": [{"id": "a", "state": "unknown"}, {"id": "b", "state": "degraded"}],
        "routes": [{"name": "r", "backends": backends(&[("a", Some(1), None), ("b", Some(1), None)])}]}),
    );
    let s = shares(&c, &req(), 20_000, 0);
    assert_share(&s, "a", 0.5);
    assert_share(&s, "b", 0.5);
}

#[test]
fn min_healthy_makes_a_thin_cluster_unusable() {
    let c = one_route(
        &["a", "b"],
        json!({"min_healthy": 2, "backends": backends(&[("a", Some(1), None), ("b", Some(5), None)])}),
    );
    assert_share(&shares(&c, &req(), 5_000, 0), "b", 1.0);
}

#[test]
fn active_standby_uses_the_primary_then_the_first_usable_standby() {
    let route = |a_ready: u32, b_ready: u32| {
        one_route(
            &["a", "b", "c"],
            json!({"mode": "active-standby", "order": ["a", "b", "c"],
                   "backends": backends(&[("a", Some(a_ready), None), ("b", Some(b_ready), None), ("c", Some(1), None)])}),
        )
    };
    let mut rng = fastrand::Rng::with_seed(3);
    let c = route(1, 1);
    let d = decide(&c, &req(), 0, &mut rng);
    assert_eq!(cluster_of(&c, &d), "a");
    assert_eq!(d.target.unwrap().reason, Reason::Primary);
    let c = route(0, 1);
    let d = decide(&c, &req(), 0, &mut rng);
    assert_eq!(cluster_of(&c, &d), "b");
    assert_eq!(d.target.unwrap().reason, Reason::Standby);
    let c = route(0, 0);
    assert_eq!(cluster_of(&c, &decide(&c, &req(), 0, &mut rng)), "c");
}

#[test]
fn failback_waits_for_the_hold_down_then_ramps() {
    let route = |a_ready: u32| {
        one_route(
            &["a", "b"],
            json!({"mode": "active-standby", "order": ["a", "b"],
                   "failback": {"hold_seconds": 10, "ramp_seconds": 20},
                   "backends": backends(&[("a", Some(a_ready), None), ("b", Some(1), None)])}),
        )
    };
    let old = route(0);
    let mut new = route(3);
    carry_over(
        Some(&Ledger::of(&old)),
        &Ledger::default(),
        &mut new,
        1_000_000,
    );
    // During the hold the primary gets nothing.
    assert_share(&shares(&new, &req(), 5_000, 1_005_000), "b", 1.0);
    // Half way through the ramp: 50/50.
    let s = shares(&new, &req(), 100_000, 1_020_000);
    assert_share(&s, "a", 0.5);
    assert_share(&s, "b", 0.5);
    // After the ramp: all back on the primary.
    assert_share(&shares(&new, &req(), 5_000, 1_031_000), "a", 1.0);
    // A later config that keeps the primary usable keeps its timer.
    let mut newer = route(4);
    carry_over(
        Some(&Ledger::of(&new)),
        &Ledger::default(),
        &mut newer,
        1_021_000,
    );
    let s = shares(&newer, &req(), 100_000, 1_025_000);
    assert_share(&s, "a", 0.75);
}

#[test]
fn pins_route_by_header_cookie_and_query_and_fall_back_when_unusable() {
    let route = |b_ready: u32| {
        one_route(
            &["a", "b"],
            json!({"backends": backends(&[("a", Some(1), None), ("b", Some(b_ready), None)]),
            "pins": [
              {"when": {"header": "x-env", "match": {"exact": "gray"}}, "cluster": "b"},
              {"when": {"cookie": "site", "match": {"regex": "b|bee"}}, "cluster": "b"},
              {"when": {"query": "cluster", "match": "always"}, "cluster": "b"}
            ]}),
        )
    };
    let c = route(1);
    let mut rng = fastrand::Rng::with_seed(5);
    for r in [
        req().with_header("x-env", "gray"),
        req().with_header("cookie", "x=1; site=bee"),
        SimpleRequest::new("shop.example.com", "/?cluster=always"),
    ] {
        for _ in 0..50 {
            let d = decide(&c, &r, 0, &mut rng);
            assert_eq!(cluster_of(&c, &d), "b");
            assert_eq!(d.target.unwrap().reason, Reason::Pin);
        }
    }
    // Regex is a full match: "bees" does not match "b|bee".
    let s = shares(&c, &req().with_header("cookie", "site=bees"), 10_000, 0);
    assert_share(&s, "a", 0.5);
    // Pinned cluster unusable: the normal policy, reason failover.
    let c = route(0);
    let d = decide(&c, &req().with_header("x-env", "gray"), 0, &mut rng);
    assert_eq!(cluster_of(&c, &d), "a");
    assert_eq!(d.target.unwrap().reason, Reason::Failover);
}

#[test]
fn route_by_header_names_the_cluster() {
    let c = one_route(
        &["a", "b"],
        json!({"route_by_header": "x-fleetgate-cluster", "backends": backends(&[("a", Some(1), None), ("b", Some(1), None)])}),
    );
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..100 {
        let d = decide(
            &c,
            &req().with_header("x-fleetgate-cluster", "b"),
            0,
            &mut rng,
        );
        assert_eq!(cluster_of(&c, &d), "b");
        assert_eq!(d.target.unwrap().reason, Reason::Header);
    }
    // An unknown cluster name is ignored: normal split.
    let s = shares(
        &c,
        &req().with_header("x-fleetgate-cluster", "zz"),
        20_000,
        0,
    );
    assert_share(&s, "a", 0.5);
}

fn canary_route(canary: Value, canary_ready: u32) -> Config {
    let mut canary = canary;
    canary["name"] = json!("default/shop-v2");
    canary["backends"] = json!([{"cluster": "b", "upstream": "v2-b", "ready": canary_ready}]);
    one_route(
        &["a", "b"],
        json!({"backends": backends(&[("a", Some(1), None), ("b", Some(1), None)]), "canaries": [canary]}),
    )
}

fn upstream_of(c: &Config, d: &Decision) -> String {
    d.target
        .as_ref()
        .map_or("503".into(), |t| c.upstream_name(t.upstream).to_string())
}

#[test]
fn canary_by_header_uses_the_canary_service_and_falls_back_to_base() {
    let c = canary_route(
        json!({"when": [{"header": "x-canary", "match": {"regex": "always|v2"}}]}),
        1,
    );
    let mut rng = fastrand::Rng::with_seed(11);
    for v in ["always", "v2"] {
        let d = decide(&c, &req().with_header("x-canary", v), 0, &mut rng);
        assert_eq!(upstream_of(&c, &d), "v2-b");
        assert_eq!(d.target.unwrap().reason, Reason::Canary);
    }
    let d = decide(&c, &req().with_header("x-canary", "v3"), 0, &mut rng);
    assert_ne!(upstream_of(&c, &d), "v2-b");
    // Canary without ready endpoints: base service.
    let c = canary_route(
        json!({"when": [{"header": "x-canary", "match": "always"}]}),
        0,
    );
    let d = decide(&c, &req().with_header("x-canary", "always"), 0, &mut rng);
    assert!(upstream_of(&c, &d).starts_with("up-"));
}

#[test]
fn canary_by_weight_follows_higress_normalisation() {
    let c = canary_route(json!({"weight": 20}), 1);
    let mut rng = fastrand::Rng::with_seed(13);
    let n = 100_000;
    let canary = (0..n)
        .filter(|_| upstream_of(&c, &decide(&c, &req(), 0, &mut rng)) == "v2-b")
        .count();
    let share = canary as f64 / n as f64;
    assert!((share - 0.20).abs() < 0.01, "canary share {share}");
}

#[test]
fn sticky_cookie_keeps_a_client_on_its_cluster_while_usable() {
    let route = |b_ready: u32| {
        one_route(
            &["a", "b"],
            json!({"sticky": {"cookie": "fg"}, "backends": backends(&[("a", Some(1), None), ("b", Some(b_ready), None)])}),
        )
    };
    let c = route(1);
    let mut rng = fastrand::Rng::with_seed(17);
    for _ in 0..100 {
        let d = decide(&c, &req().with_header("cookie", "fg=b"), 0, &mut rng);
        let t = d.target.unwrap();
        assert_eq!(
            (c.clusters[t.cluster].id.as_str(), t.reason, t.set_sticky),
            ("b", Reason::Sticky, false)
        );
    }
    // No cookie: chosen by weight, and told to set the cookie.
    let d = decide(&c, &req(), 0, &mut rng);
    assert!(d.target.unwrap().set_sticky);
    // The sticky cluster died: re-pick, and set a new cookie.
    let c = route(0);
    let d = decide(&c, &req().with_header("cookie", "fg=b"), 0, &mut rng);
    let t = d.target.unwrap();
    assert_eq!(c.clusters[t.cluster].id, "a");
    assert!(t.set_sticky);
}

#[test]
fn mirror_samples_the_configured_percentage() {
    let c = one_route(
        &["a"],
        json!({"backends": backends(&[("a", Some(1), None)]), "mirror": {"upstream": "shadow", "percent": 25}}),
    );
    let mut rng = fastrand::Rng::with_seed(19);
    let n = 100_000;
    let mirrored = (0..n)
        .filter(|_| decide(&c, &req(), 0, &mut rng).mirror.is_some())
        .count();
    let share = mirrored as f64 / n as f64;
    assert!((share - 0.25).abs() < 0.01, "mirror share {share}");
}

#[test]
fn nothing_usable_rejects_or_panics_as_configured() {
    let route = |mode: &str| {
        one_route(
            &["a", "b"],
            json!({"when_unavailable": mode, "backends": backends(&[("a", Some(0), None), ("b", Some(0), None)])}),
        )
    };
    let mut rng = fastrand::Rng::with_seed(23);
    assert!(decide(&route("reject"), &req(), 0, &mut rng)
        .target
        .is_none());
    let c = route("panic");
    let s = shares(&c, &req(), 20_000, 0);
    assert_share(&s, "a", 0.5);
    assert_eq!(
        decide(&c, &req(), 0, &mut rng).target.unwrap().reason,
        Reason::Panic
    );
}

#[test]
fn passive_ejection_moves_traffic_and_all_ejected_trusts_the_controller() {
    let c = one_route(
        &["a", "b"],
        json!({"backends": backends(&[("a", Some(1), None), ("b", Some(1), None)])}),
    );
    let ejected = PassiveState {
        ejected_until_ms: 10_000,
        probation: true,
        ejections: 1,
        ..Default::default()
    };
    let a_up = c.routes[0].base.backends[0].upstream;
    let mut rng = fastrand::Rng::with_seed(29);
    for _ in 0..1000 {
        let d = select(
            &c,
            &req(),
            |u| {
                if u == a_up {
                    ejected
                } else {
                    PassiveState::default()
                }
            },
            5_000,
            &mut rng,
        )
        .unwrap();
        assert_eq!(cluster_of(&c, &d), "b");
    }
    // Both ejected: spread over what the controller allows, reason panic.
    let d = select(&c, &req(), |_| ejected, 5_000, &mut rng).unwrap();
    assert_eq!(d.target.unwrap().reason, Reason::Panic);
}

#[test]
fn unmatched_requests_get_no_decision() {
    let c = one_route(&["a"], json!({"backends": backends(&[("a", None, None)])}));
    let mut rng = fastrand::Rng::with_seed(1);
    assert!(select(
        &c,
        &SimpleRequest::new("other.example.com", "/"),
        healthy,
        0,
        &mut rng
    )
    .is_none());
}

#[test]
fn a_config_without_routes_is_valid_and_routes_nothing() {
    // What the controller publishes once the fleet's last Ingress of its class is deleted.
    let c = cfg(json!({"version": 1, "clusters": clusters(&["hz-a"]), "routes": []}));
    let mut rng = fastrand::Rng::with_seed(7);
    assert!(select(&c, &req(), healthy, 0, &mut rng).is_none());
}
