//! Gateway API objects shaped as `kubectl get -o yaml` prints them (`examples/fleet/gateway-api`,
//! after the upstream conformance manifests) against the two members' dumps: which classes,
//! Gateways and listeners are ours and valid, where each HTTPRoute attaches, and each status
//! condition the spec names. The statuses must be exactly `tests/golden/gateway-api/status.yaml`
//! (reviewed by hand); `UPDATE_GOLDEN=1` rewrites it.

use std::path::Path;

use fleetgate_controller::gateway_api::Objects;
use fleetgate_controller::gateway_api::{
    self, status, Cond, FleetBackends, GatewayOutcome, Inputs, ObjKey, Outcome, RouteOutcome,
};
use k8s_openapi_gw::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi_gw::jiff::Timestamp;
use serde_json::{json, Value};

mod fleet_fixture;

const ADDRESS: &str = "203.0.113.10";

fn evaluate() -> (Outcome, Objects) {
    let (dump, labels, members) = fleet_fixture::gateway_api();
    let inputs = Inputs {
        classes: &dump.classes,
        gateways: &dump.gateways,
        routes: &dump.http_routes,
        grants: &dump.grants,
        namespaces: &labels,
        address: Some(ADDRESS),
    };
    let backends = FleetBackends {
        members: &members,
        imports: &dump.service_imports,
    };
    (gateway_api::evaluate(&inputs, &backends), dump)
}

fn route<'o>(o: &'o Outcome, ns: &str, name: &str) -> &'o RouteOutcome {
    let key = ObjKey {
        namespace: ns.into(),
        name: name.into(),
    };
    o.routes
        .iter()
        .find(|r| r.route == key)
        .unwrap_or_else(|| panic!("{key}"))
}

fn gateway<'o>(o: &'o Outcome, name: &str) -> &'o GatewayOutcome {
    o.gateways.iter().find(|g| g.key.name == name).unwrap()
}

/// `(status, reason)` of a condition.
fn sr(c: &Cond) -> (bool, &str) {
    (c.status, c.reason.as_str())
}

#[test]
fn routes_attach_where_listeners_allow_them_and_say_why_not_elsewhere() {
    let (o, _) = evaluate();
    let shop = route(&o, "default", "shop");
    assert_eq!(sr(&shop.parents[0].accepted), (true, "Accepted"));
    let where_: Vec<_> = shop
        .attachments
        .iter()
        .map(|a| (a.listener.as_str(), a.hostnames.clone()))
        .collect();
    assert_eq!(where_, [("http", vec!["shop.example.com".to_string()])]);

    // The shared listener selects namespaces by label; a route without hostnames takes any.
    let staging = route(&o, "staging", "shop");
    assert_eq!(staging.attachments[0].listener, "http-shared");
    assert_eq!(staging.attachments[0].hostnames, ["*"]);

    for (ns, name, reason) in [
        ("tenant-a", "shop", "NotAllowedByListeners"),
        ("default", "wrong-host", "NoMatchingListenerHostname"),
        ("default", "no-such-listener", "NoMatchingParent"),
    ] {
        let r = route(&o, ns, name);
        assert_eq!(sr(&r.parents[0].accepted), (false, reason), "{ns}/{name}");
        assert!(r.attachments.is_empty());
    }

    // A conflicted listener takes no routes; the other parents still do.
    let two = route(&o, "default", "two-parents");
    let accepted: Vec<_> = two.parents.iter().map(|p| sr(&p.accepted)).collect();
    assert_eq!(
        accepted,
        [
            (true, "Accepted"),
            (true, "Accepted"),
            (false, "NoMatchingParent")
        ]
    );

    // Routes on Gateways of other controllers get nothing from us.
    assert!(o.routes.iter().all(|r| r.route.name != "on-envoy-gateway"));
}

#[test]
fn backend_references_resolve_by_kind_grant_and_existence() {
    let (o, _) = evaluate();
    for (ns, name, want) in [
        ("default", "shop", (true, "ResolvedRefs")),
        ("default", "shop-staging", (true, "ResolvedRefs")),
        ("staging", "shop-from-default", (false, "RefNotPermitted")),
        ("default", "missing-backend", (false, "BackendNotFound")),
        ("default", "bad-kind", (false, "InvalidKind")),
        ("default", "imported", (true, "ResolvedRefs")),
    ] {
        let r = route(&o, ns, name);
        assert_eq!(
            sr(&r.parents[0].resolved_refs),
            want,
            "{ns}/{name}: {:?}",
            r.parents[0].resolved_refs
        );
    }
    // Unresolved references do not stop a route attaching (the spec's 500 for that share).
    assert_eq!(route(&o, "default", "missing-backend").attachments.len(), 1);
}

#[test]
fn gateways_and_listeners_report_what_is_valid_and_count_attached_routes() {
    let (o, _) = evaluate();
    assert_eq!(
        o.classes.keys().collect::<Vec<_>>(),
        ["fleetgate", "fleetgate-with-parameters"]
    );
    assert_eq!(
        sr(&o.classes["fleetgate-with-parameters"]),
        (false, "InvalidParameters")
    );
    // Only Gateways of an accepted class of ours.
    let names: Vec<&str> = o.gateways.iter().map(|g| g.key.name.as_str()).collect();
    assert_eq!(
        names,
        ["conflicting-listeners", "shop-gateway", "static-address"]
    );

    let shop = gateway(&o, "shop-gateway");
    assert_eq!(sr(&shop.conditions[0]), (true, "ListenersNotValid"));
    assert_eq!(sr(&shop.conditions[1]), (true, "Programmed"));
    let listeners: Vec<_> = (shop.listeners.iter())
        .map(|l| (l.name.as_str(), l.usable(), l.attached_routes))
        .collect();
    let attached_http = [
        "shop",
        "shop-staging",
        "missing-backend",
        "bad-kind",
        "imported",
        "two-parents",
    ]
    .len();
    assert_eq!(
        listeners,
        [
            ("http", true, attached_http as i32),
            ("http-shared", true, 2),
            ("https", false, 0),
            ("grpc", false, 0)
        ]
    );
    let https = &shop.listeners[2].conditions[0];
    assert_eq!(sr(https), (false, "UnsupportedProtocol"));
    let grpc = &shop.listeners[3];
    assert_eq!(sr(&grpc.conditions[2]), (false, "InvalidRouteKinds"));
    assert_eq!(
        grpc.supported_kinds,
        [(
            "gateway.networking.k8s.io".to_string(),
            "HTTPRoute".to_string()
        )]
    );

    let conflicts = gateway(&o, "conflicting-listeners");
    let conflicted: Vec<_> = conflicts
        .listeners
        .iter()
        .map(|l| sr(&l.conditions[1]))
        .collect();
    assert_eq!(
        conflicted,
        [
            (true, "HostnameConflict"),
            (true, "HostnameConflict"),
            (false, "NoConflicts")
        ]
    );
    let fixed = gateway(&o, "static-address");
    assert_eq!(sr(&fixed.conditions[0]), (false, "UnsupportedAddress"));
    assert_eq!(sr(&fixed.conditions[1]), (false, "Invalid"));
}

fn epoch(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

/// Every status of ours, as YAML-ready JSON.
fn statuses(o: &Outcome, dump: &Objects, now: &Time) -> Value {
    let classes: Vec<Value> = (o.classes.iter())
        .map(|(name, c)| json!({"GatewayClass": name, "status": status::class(c, Some(1), None, now)}))
        .collect();
    let gateways: Vec<Value> = (o.gateways.iter())
        .map(|g| json!({"Gateway": g.key.to_string(), "status": status::gateway(g, None, now)}))
        .collect();
    let routes: Vec<Value> = (o.routes.iter())
        .map(|r| {
            let obj = dump.http_routes.iter().find(|h| ObjKey::of(&h.metadata) == r.route).unwrap();
            let st = status::route(r, obj.metadata.generation, obj.status.as_ref(), now);
            json!({"HTTPRoute": r.route.to_string(), "attachments": r.attachments.iter().map(ToString::to_string).collect::<Vec<_>>(), "status": st})
        })
        .collect();
    json!({"classes": classes, "gateways": gateways, "routes": routes})
}

#[test]
fn statuses_match_the_golden_file() {
    let (o, dump) = evaluate();
    let got = serde_yaml::to_string(&statuses(&o, &dump, &epoch(1_800_000_000))).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gateway-api/status.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 to create)", path.display()));
    assert_eq!(got, want);
}

#[test]
fn unchanged_conditions_keep_their_transition_time_and_foreign_parents_stay() {
    let (o, dump) = evaluate();
    let shop = route(&o, "default", "shop");
    let first = status::route(shop, Some(1), None, &epoch(100));
    let again = status::route(shop, Some(1), Some(&first), &epoch(200));
    assert_eq!(
        again, first,
        "nothing changed: the same status, nothing to write"
    );

    // Another controller's entry on the route is kept beside ours.
    let foreign = dump
        .http_routes
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("on-envoy-gateway"));
    let foreign = foreign.unwrap().status.as_ref().unwrap();
    let merged = status::route(shop, Some(1), Some(foreign), &epoch(300));
    let controllers: Vec<&str> = merged
        .parents
        .iter()
        .map(|p| p.controller_name.as_str())
        .collect();
    assert_eq!(
        controllers,
        [
            "gateway.envoyproxy.io/gatewayclass-controller",
            "fleetgate.io/gateway-controller"
        ]
    );

    // A condition that flips gets the new time.
    let mut changed = shop.clone();
    changed.parents[0].resolved_refs.status = false;
    changed.parents[0].resolved_refs.reason = "BackendNotFound".into();
    let flipped = status::route(&changed, Some(2), Some(&first), &epoch(400));
    let times: Vec<_> = flipped.parents[0]
        .conditions
        .iter()
        .map(|c| c.last_transition_time.0.as_second())
        .collect();
    assert_eq!(times, [100, 400]);
}
