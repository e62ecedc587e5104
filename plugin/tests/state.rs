//! The state document natively: applied to the routes without rebuilding them, refused
//! clearly when it is for other routes, and failback timers carried by slot.

use std::sync::Arc;

use fleetgate_plugin::config::{self, ClusterState, Config, StateV1};
use fleetgate_plugin::decide::select;
use fleetgate_plugin::failback::{carry_state, Ledger};
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use serde_json::{json, Value};

const ROUTES_REV: &str = "routes-1";

/// Two routes over hz-a and hz-b; the first has a canary on hz-b and a fallback on hz-a.
fn routes() -> Config {
    let doc = json!({
        "version": 1,
        "clusters": [{"id": "hz-a"}, {"id": "hz-b"}],
        "routes": [
            {"name": "default/shop", "hosts": ["shop.example.com"],
             "mode": "active-standby", "order": ["hz-a", "hz-b"],
             "failback": {"hold_seconds": 10, "ramp_seconds": 20},
             "backends": [{"cluster": "hz-a", "upstream": "shop-a", "ready": 2},
                          {"cluster": "hz-b", "upstream": "shop-b", "ready": 2}],
             "canaries": [{"name": "default/shop-v2", "weight": 10,
                           "backends": [{"cluster": "hz-b", "upstream": "v2-b"}]}],
             "fallback": {"name": "default/sorry", "backends": [{"cluster": "hz-a", "upstream": "sorry-a"}]}},
            {"name": "default/orders", "hosts": ["orders.example.com"],
             "backends": [{"cluster": "hz-a", "upstream": "orders-a", "ready": 1},
                          {"cluster": "hz-b", "upstream": "orders-b", "ready": 1}]}
        ]
    });
    let mut c = config::parse(doc.to_string().as_bytes()).expect("valid routes");
    c.routes_revision = Some(ROUTES_REV.to_string());
    c
}

/// A state document: shop (a, b, canary b, fallback a), orders (a, b), as `"2,2,-,1"`.
fn state(rev: &str, a: &str, shop: &str, orders: &str) -> Value {
    json!({
        "version": 1, "revision": rev, "routes_revision": ROUTES_REV,
        "clusters": {"hz-a": a, "hz-b": "healthy"},
        "ready": format!("{shop};{orders}")
    })
}

fn parse(v: &Value) -> StateV1 {
    config::parse_state(v.to_string().as_bytes()).expect("state parses")
}

fn apply(c: &Config, v: &Value) -> Result<Config, config::ConfigError> {
    c.with_state(&parse(v))
}

fn cluster_for(c: &Config, host: &str) -> String {
    let mut rng = fastrand::Rng::with_seed(1);
    let req = SimpleRequest::new(host, "/");
    let d = select(c, &req, |_| PassiveState::default(), 0, &mut rng).expect("route matches");
    d.target
        .map_or("503".into(), |t| c.clusters[t.cluster].id.clone())
}

#[test]
fn a_state_replaces_cluster_states_and_ready_counts_and_shares_the_routes() {
    let c = routes();
    assert_eq!(cluster_for(&c, "shop.example.com"), "hz-a");
    let doc = state("s1", "healthy", "0,3,-,1", "0,5");
    let next = apply(&c, &doc).expect("state applies");
    assert!(Arc::ptr_eq(&c.routes, &next.routes), "routes are shared");
    assert!(Arc::ptr_eq(&c.table, &next.table));
    assert_eq!(next.state_revision.as_deref(), Some("s1"));
    let shop = &next.routes[0];
    let ready: Vec<_> = shop.backends().map(|b| next.ready(b)).collect();
    assert_eq!(ready, [Some(0), Some(3), None, Some(1)]);
    assert_eq!(next.weight(&next.routes[1].base.backends[1]), 5);
    // hz-a has no ready endpoint for shop now: the standby takes it.
    assert_eq!(cluster_for(&next, "shop.example.com"), "hz-b");
    assert_eq!(cluster_for(&next, "orders.example.com"), "hz-b");
    // The old config is untouched.
    assert_eq!(cluster_for(&c, "shop.example.com"), "hz-a");
    // A cluster state counts as well: hz-b down leaves nothing for orders.
    let mut down = doc.clone();
    down["clusters"]["hz-b"] = json!("down");
    let next = apply(&c, &down).unwrap();
    assert_eq!(next.clusters[1].state, ClusterState::Down);
    assert_eq!(cluster_for(&next, "orders.example.com"), "503");
}

#[test]
fn a_state_round_trips_through_its_document() {
    let c = routes();
    let doc = c.state("s0");
    assert_eq!(
        serde_json::to_value(&doc).unwrap(),
        state("s0", "healthy", "2,2,-,-", "1,1")
    );
    let back = c.with_state(&doc).unwrap();
    assert_eq!(back.backends, c.backends);
}

#[test]
fn a_state_for_other_routes_is_refused_with_the_reason() {
    let c = routes();
    let good = state("s1", "healthy", "1,1,1,1", "1,1");
    let mut cases: Vec<(Value, &str, &str)> = Vec::new();
    let mut other = good.clone();
    other["routes_revision"] = json!("routes-2");
    cases.push((
        other,
        "routes_revision",
        "the state is for routes revision \"routes-2\", this plugin runs routes revision \"routes-1\"",
    ));
    let mut unknown = good.clone();
    unknown["clusters"]["hz-x"] = json!("healthy");
    cases.push((
        unknown,
        "clusters.hz-x",
        "unknown cluster \"hz-x\" (not in the routes' clusters)",
    ));
    let mut missing = good.clone();
    missing["clusters"].as_object_mut().unwrap().remove("hz-b");
    cases.push((missing, "clusters", "cluster \"hz-b\" is missing"));
    let mut short = good.clone();
    short["ready"] = json!("1,1,1;1,1");
    cases.push((
        short,
        "ready[0]",
        "route \"default/shop\" has 4 backends (base, canaries, fallback), the state gives 3",
    ));
    let mut extra = good.clone();
    extra["ready"] = json!("1,1,1,1;1,1;1");
    cases.push((extra, "ready", "3 routes, the routes revision has 2"));
    let mut version = good.clone();
    version["version"] = json!(2);
    cases.push((
        version,
        "version",
        "unsupported state version 2 (this plugin reads version 1)",
    ));
    for (doc, path, reason) in cases {
        let e = apply(&c, &doc).expect_err(path);
        assert_eq!((e.path.as_str(), e.reason.as_str()), (path, reason));
    }
    // Without a routes revision (a static config) no state applies.
    let mut unnamed = routes();
    unnamed.routes_revision = None;
    let e = apply(&unnamed, &good).unwrap_err();
    assert!(
        e.reason.ends_with("runs routes revision \"none yet\""),
        "{e}"
    );
}

#[test]
fn shape_errors_name_the_json_path() {
    for (doc, want) in [
        (r#"{"version":1}"#, "missing field `revision`"),
        (
            r#"{"version":1,"revision":"s","routes_revision":"r","clusters":{"a":"sleepy"},"ready":""}"#,
            "clusters.a: unknown variant `sleepy`",
        ),
        (
            r#"{"version":1,"revision":"s","routes_revision":"r","clusters":{},"ready":"1;1,x"}"#,
            "ready: route 1, backend 1: \"x\" is not a ready count",
        ),
        (
            r#"{"version":1,"revision":"s","routes_revision":"r","clusters":{},"ready":"","x":1}"#,
            "x: unknown field `x`",
        ),
    ] {
        let e = config::parse_state(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
    }
}

#[test]
fn a_backend_that_comes_back_in_a_state_starts_its_hold_down_by_slot() {
    const T0: u64 = 1_000_000;
    let c = routes();
    let doc = |a_ready: u32| state("s", "healthy", &format!("{a_ready},1,1,1"), "1,1");
    let mut down = apply(&c, &doc(0)).unwrap();
    carry_state(&c, &Ledger::default(), &mut down, T0);
    let shop_a = &c.routes[0].base.backends[0];
    assert_eq!(down.recovered_at_ms(shop_a), None);
    let mut back = apply(&down, &doc(2)).unwrap();
    carry_state(&down, &Ledger::to_share(&down, T0), &mut back, T0 + 1_000);
    assert_eq!(back.recovered_at_ms(shop_a), Some(T0 + 1_000));
    // The hold-down keeps the standby in charge; still usable by the controller's view.
    assert_eq!(cluster_for(&back, "shop.example.com"), "hz-b");
    // Another worker applying the same state later takes the timer from the shared ledger.
    let shared = Ledger::to_share(&back, T0 + 1_000);
    let mut second = apply(&down, &doc(2)).unwrap();
    carry_state(&down, &shared, &mut second, T0 + 1_500);
    assert_eq!(second.recovered_at_ms(shop_a), Some(T0 + 1_000));
    // A state that changes nothing about a usable backend keeps its timer.
    let mut again = apply(&back, &doc(3)).unwrap();
    carry_state(&back, &Ledger::default(), &mut again, T0 + 2_000);
    assert_eq!(again.recovered_at_ms(shop_a), Some(T0 + 1_000));
}
