//! The fidelity features the controller relies on: `absent` matchers, the route's fallback
//! (default backend) service, and availability reported by the plugin's own rule.

use fleetgate_plugin::config::{self, Config};
use fleetgate_plugin::decide::{select, Decision, Reason};
use fleetgate_plugin::failover::route_availability;
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use serde_json::{json, Value};

fn cfg(route: Value) -> Config {
    let mut r = json!({"name": "default/shop", "hosts": ["shop.example.com"],
        "backends": [{"cluster": "a", "upstream": "up-a", "ready": 1},
                     {"cluster": "b", "upstream": "up-b", "ready": 1}]});
    for (k, v) in route.as_object().unwrap() {
        r[k] = v.clone();
    }
    let doc =
        json!({"version": 1, "clusters": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "routes": [r]});
    config::parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("rejected: {e}"))
}

fn decide_with(c: &Config, r: &SimpleRequest, ejected: &[&str], seed: u64) -> Decision {
    let ejected: Vec<usize> = ejected
        .iter()
        .map(|u| c.upstreams.iter().position(|x| x == u).expect("upstream"))
        .collect();
    let passive = |u| {
        if ejected.contains(&u) {
            PassiveState::ejected_until(u64::MAX)
        } else {
            PassiveState::default()
        }
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    select(c, r, passive, 1_000, &mut rng).expect("route matches")
}

fn upstream(c: &Config, d: &Decision) -> Option<(String, Reason)> {
    let t = d.target.as_ref()?;
    Some((c.upstreams[t.upstream].clone(), t.reason))
}

fn req() -> SimpleRequest {
    SimpleRequest::new("shop.example.com", "/")
}

#[test]
fn absent_matches_only_a_missing_value_and_nothing_else_matches_one() {
    for source in [
        json!({"header": "x-env"}),
        json!({"cookie": "env"}),
        json!({"query": "env"}),
    ] {
        let pin = |m: Value| {
            let mut when = source.clone();
            when["match"] = m;
            cfg(json!({"pins": [{"when": when, "cluster": "b"}]}))
        };
        let without = req();
        let with = match source.as_object().unwrap().keys().next().unwrap().as_str() {
            "header" => req().with_header("x-env", "always"),
            "cookie" => req().with_header("cookie", "env=always"),
            _ => SimpleRequest::new("shop.example.com", "/?env=always"),
        };
        let pinned = |c: &Config, r: &SimpleRequest| {
            (0..20).all(|seed| upstream(c, &decide_with(c, r, &[], seed)).unwrap().1 == Reason::Pin)
        };
        let absent = pin(json!("absent"));
        assert!(
            pinned(&absent, &without),
            "{source}: absent matches a missing value"
        );
        assert!(
            !pinned(&absent, &with),
            "{source}: absent does not match a value"
        );
        for m in [
            json!("always"),
            json!("present"),
            json!({"exact": ""}),
            json!({"regex": ".*"}),
        ] {
            let c = pin(m.clone());
            assert!(
                !pinned(&c, &without),
                "{source}: {m} must not match a missing value"
            );
            assert!(
                pinned(&c, &with) || m == json!({"exact": ""}),
                "{source}: {m}"
            );
        }
    }
}

fn with_fallback(extra: Value) -> Config {
    let mut route = json!({"fallback": {"name": "default/default-backend", "backends": [
        {"cluster": "b", "upstream": "fb-b", "weight": 3},
        {"cluster": "c", "upstream": "fb-c", "weight": 1}]}});
    for (k, v) in extra.as_object().unwrap() {
        route[k] = v.clone();
    }
    cfg(route)
}

#[test]
fn fallback_takes_traffic_only_when_the_base_service_has_no_usable_backend() {
    let c = with_fallback(json!({}));
    let d = decide_with(&c, &req(), &[], 1);
    assert!(matches!(upstream(&c, &d), Some((u, Reason::Weight)) if u.starts_with("up-")));
    // Base fully ejected: the fallback's usable backends share by weight (3:1).
    let mut n_b = 0;
    for seed in 0..4000 {
        let d = decide_with(&c, &req(), &["up-a", "up-b"], seed);
        let (u, reason) = upstream(&c, &d).unwrap();
        assert_eq!(reason, Reason::Fallback);
        n_b += usize::from(u == "fb-b");
    }
    let share = n_b as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.03, "fb-b share {share}");
    // One fallback backend ejected too: the other takes everything.
    let d = decide_with(&c, &req(), &["up-a", "up-b", "fb-b"], 3);
    assert_eq!(upstream(&c, &d), Some(("fb-c".into(), Reason::Fallback)));
}

#[test]
fn without_a_usable_fallback_the_panic_rule_and_when_unavailable_apply() {
    let all = ["up-a", "up-b", "fb-b", "fb-c"];
    // Everything ejected but allowed by the controller: panic over the base service.
    let c = with_fallback(json!({}));
    let (u, reason) = upstream(&c, &decide_with(&c, &req(), &all, 1)).unwrap();
    assert_eq!(reason, Reason::Panic);
    assert!(u.starts_with("up-"), "{u}");
    // The controller says the base is gone: fallback first, then reject.
    let down = json!({"backends": [{"cluster": "a", "upstream": "up-a", "ready": 0}]});
    let c = with_fallback(down.clone());
    let d = decide_with(&c, &req(), &[], 1);
    assert_eq!(upstream(&c, &d).unwrap().1, Reason::Fallback);
    let d = decide_with(&c, &req(), &["fb-b", "fb-c"], 1);
    assert_eq!(d.target, None, "when_unavailable reject");
}

#[test]
fn pins_and_sticky_fall_through_to_the_fallback_without_a_cookie() {
    let c = with_fallback(json!({"sticky": {"cookie": "fg"},
        "pins": [{"when": {"header": "x-env", "match": "present"}, "cluster": "a"}]}));
    let r = req().with_header("x-env", "1");
    let t = decide_with(&c, &r, &["up-a", "up-b"], 1).target.unwrap();
    assert_eq!(t.reason, Reason::Fallback);
    let t = decide_with(&c, &req(), &["up-a", "up-b"], 1)
        .target
        .unwrap();
    assert_eq!((t.reason, t.set_sticky), (Reason::Fallback, false));
}

#[test]
fn fallback_backends_are_validated_like_canary_backends() {
    let bad = |fallback: Value| {
        let doc = json!({"version": 1, "clusters": [{"id": "a"}], "routes": [{"name": "r",
            "backends": [{"cluster": "a", "upstream": "u"}], "fallback": fallback}]});
        config::parse(doc.to_string().as_bytes()).expect_err("rejected")
    };
    let e = bad(json!({"name": "ns/d", "backends": [{"cluster": "hz-c", "upstream": "d"}]}));
    assert_eq!(
        e.to_string(),
        "routes[0].fallback.backends[0].cluster: unknown cluster \"hz-c\" (not in clusters)"
    );
    let e = bad(
        json!({"name": "ns/d", "backends": [{"cluster": "a", "upstream": "d"}, {"cluster": "a", "upstream": "e"}]}),
    );
    assert_eq!(e.path, "routes[0].fallback.backends[1].cluster");
    let e = bad(json!({"name": "ns/d", "backends": []}));
    assert_eq!(e.path, "routes[0].fallback.backends");
    let e = bad(json!({"name": " ", "backends": [{"cluster": "a", "upstream": "d"}]}));
    assert_eq!(e.path, "routes[0].fallback.name");
    let e = bad(json!({"name": "ns/d", "backends": [{"cluster": "a", "upstream": "d"}], "x": 1}));
    assert_eq!(e.path, "routes[0].fallback.x");
}

#[test]
fn route_availability_follows_the_plugins_rule() {
    let c = with_fallback(json!({"min_healthy": 2, "backends": [
        {"cluster": "a", "upstream": "up-a", "ready": 3},
        {"cluster": "b", "upstream": "up-b", "ready": 1}]}));
    let none = route_availability(&c, 0, &|_| false).unwrap();
    assert_eq!(none.usable_clusters().collect::<Vec<_>>(), vec![0]);
    assert!(!none.base[1].by_controller, "b is below min_healthy");
    assert!(none.served());
    let up_a = c.upstreams.iter().position(|u| u == "up-a").unwrap();
    let ejected = route_availability(&c, 0, &|u| u == up_a).unwrap();
    assert_eq!(ejected.usable_clusters().count(), 0);
    assert!(ejected.base[0].by_controller && !ejected.base[0].usable);
    assert!(ejected.served(), "the fallback still serves");
    assert_eq!(ejected.fallback.iter().filter(|b| b.usable).count(), 2);
    assert!(route_availability(&c, 1, &|_| false).is_none());
}

/// Found by the `decision` fuzz target: a pin (or header, or cookie) naming a cluster that the
/// active-standby `order` leaves out sent traffic there, though such a cluster never takes
/// this route's traffic.
#[test]
fn a_pin_outside_the_active_standby_order_falls_back_to_the_policy() {
    let c = cfg(
        json!({"mode": "active-standby", "order": ["a"], "route_by_header": "x-c",
        "sticky": {"cookie": "fg"},
        "pins": [{"when": {"header": "x-env", "match": "present"}, "cluster": "b"}]}),
    );
    for r in [
        req().with_header("x-env", "1"),
        req().with_header("x-c", "b"),
        req().with_header("cookie", "fg=b"),
    ] {
        let (u, reason) = upstream(&c, &decide_with(&c, &r, &[], 1)).unwrap();
        assert_eq!(u, "up-a", "{r:?}");
        assert_ne!(reason, Reason::Pin);
    }
    let avail = route_availability(&c, 0, &|_| false).unwrap();
    assert_eq!(avail.usable_clusters().collect::<Vec<_>>(), vec![0]);
}
