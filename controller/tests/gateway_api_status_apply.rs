//! Gateway API status written by server-side apply against kube's mock service, on the
//! conformance-shaped objects of `examples/fleet/gateway-api` and the two members' dumps: the
//! first pass applies every status of ours (the statuses of the reviewed golden file), a second
//! pass over objects now carrying them sends nothing, a change sends one apply for the object it
//! changes, and another controller's entries of an HTTPRoute's atomic `status.parents` list are
//! kept as they are (applied over the route's resourceVersion).

mod common;
mod fleet_fixture;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{body_json, mock_client};
use fleetgate_controller::admin::Metrics;
use fleetgate_controller::gateway_api::apply::{self, FIELD_MANAGER};
use fleetgate_controller::gateway_api::Objects;
use fleetgate_controller::store::Snapshot;
use gateway_api::apis::standard::httproutes::HttpRoute;
use http::{Method, Response, StatusCode};
use k8s_openapi_gw::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi_gw::jiff::Timestamp;
use kube::client::Body;
use serde_json::{json, Value};

/// The golden file's time, so the bodies can be checked against it.
fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

/// The fleet: the Gateway API objects, namespaces and the two members of the fixtures.
fn fleet() -> Snapshot {
    let (gateway_api, namespaces, members) = fleet_fixture::gateway_api();
    Snapshot {
        ingresses: vec![],
        classes: vec![],
        config_maps: vec![],
        members,
        fleet_synced: true,
        gateway_api,
        namespaces,
        gateway_api_listed: true,
    }
}

fn route<'s>(snap: &'s mut Snapshot, ns: &str, name: &str) -> &'s mut HttpRoute {
    (snap.gateway_api.http_routes.iter_mut())
        .find(|r| {
            r.metadata.namespace.as_deref() == Some(ns) && r.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("no route {ns}/{name}"))
}

/// The apply seen at the path that ends with `suffix`.
fn seen_at<'s>(seen: &'s [Seen], suffix: &str) -> &'s Seen {
    (seen.iter())
        .find(|s| s.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no apply at {suffix}: {seen:#?}"))
}

/// One request the mock API server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// Run one status pass against a mock API server answering each apply with its body (or, for
/// the paths in `refuse`, the error status given); returns what it saw.
async fn pass(snap: &Snapshot, metrics: &Metrics, refuse: &[(&str, u16)]) -> Vec<Seen> {
    let (client, mut handle) = mock_client();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, refuse) = (
        seen.clone(),
        (refuse.iter())
            .map(|(p, code)| (p.to_string(), *code))
            .collect::<Vec<_>>(),
    );
    let server = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (method, uri) = (req.method().clone(), req.uri().clone());
            let content_type = req.headers()["content-type"].to_str().unwrap().to_string();
            let body = body_json(req).await;
            let mut answer = Response::new(Body::from(serde_json::to_vec(&body).unwrap()));
            if let Some((_, code)) = refuse.iter().find(|(p, _)| p == uri.path()) {
                // As the API server says them.
                let (reason, message) = match code {
                    409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again"),
                    _ => ("InternalError", "Internal error occurred"),
                };
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": reason, "message": message, "code": code});
                answer = Response::new(Body::from(serde_json::to_vec(&status).unwrap()));
                *answer.status_mut() = StatusCode::from_u16(*code).unwrap();
            }
            send.send_response(answer);
            log.lock().unwrap().push(Seen {
                method,
                path: uri.path().to_string(),
                query: uri.query().unwrap_or_default().to_string(),
                content_type,
                body,
            });
        }
    });
    let outcome = apply::evaluate_fleet(snap, Some("203.0.113.10"));
    apply::write_status(&client, &outcome, &snap.gateway_api, &now(), metrics).await;
    drop(client);
    server.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    seen
}

/// The golden statuses (`tests/golden/gateway-api/status.yaml`), by the status path of each object.
fn golden() -> BTreeMap<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gateway-api/status.yaml");
    let golden: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    let gw = "/apis/gateway.networking.k8s.io/v1";
    for (list, field, plural) in [
        ("classes", "GatewayClass", "gatewayclasses"),
        ("gateways", "Gateway", "gateways"),
        ("routes", "HTTPRoute", "httproutes"),
    ] {
        for entry in golden[list].as_array().unwrap() {
            let key = entry[field].as_str().unwrap();
            let path = match key.split_once('/') {
                Some((ns, name)) => format!("{gw}/namespaces/{ns}/{plural}/{name}/status"),
                None => format!("{gw}/{plural}/{key}/status"),
            };
            out.insert(path, entry["status"].clone());
        }
    }
    out
}

/// `objects` as they are once the applies in `seen` are written.
fn written(objects: &mut Objects, seen: &[Seen]) {
    fn status_of<T: serde::de::DeserializeOwned>(
        seen: &[Seen],
        kind: &str,
        ns: &Option<String>,
        name: &Option<String>,
    ) -> Option<T> {
        let applied = seen.iter().find(|s| {
            let m = &s.body["metadata"];
            s.body["kind"] == kind
                && m["name"] == json!(name)
                && (ns.is_none() || m["namespace"] == json!(ns))
        })?;
        Some(serde_json::from_value(applied.body["status"].clone()).unwrap())
    }
    for c in &mut objects.classes {
        c.status = status_of(seen, "GatewayClass", &None, &c.metadata.name).or(c.status.take());
    }
    for g in &mut objects.gateways {
        g.status =
            status_of(seen, "Gateway", &g.metadata.namespace, &g.metadata.name).or(g.status.take());
    }
    for r in &mut objects.http_routes {
        r.status = status_of(seen, "HTTPRoute", &r.metadata.namespace, &r.metadata.name)
            .or(r.status.take());
    }
}

#[tokio::test]
async fn the_first_pass_applies_every_status_and_the_second_sends_nothing() {
    let mut snap = fleet();
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    let mut golden = golden();
    // The golden file says generation 1 for every class; the applied condition says the class's.
    let with_params =
        "/apis/gateway.networking.k8s.io/v1/gatewayclasses/fleetgate-with-parameters/status";
    golden.get_mut(with_params).unwrap()["conditions"][0]["observedGeneration"] = json!(2);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths.len(),
        golden.len(),
        "one apply per object of ours: {paths:#?}"
    );
    for s in &seen {
        assert_eq!(s.method, Method::PATCH);
        assert_eq!(s.content_type, "application/apply-patch+yaml");
        let query: Vec<&str> = s.query.split('&').filter(|q| !q.is_empty()).collect();
        assert!(query.contains(&"force=true"), "{}", s.query);
        assert!(
            query.contains(&format!("fieldManager={FIELD_MANAGER}").as_str()),
            "{}",
            s.query
        );
        let want = golden
            .get(&s.path)
            .unwrap_or_else(|| panic!("not ours: {}", s.path));
        assert_eq!(&s.body["status"], want, "{}", s.path);
        assert_eq!(s.body["apiVersion"], "gateway.networking.k8s.io/v1");
    }
    let shop = seen_at(&seen, "/namespaces/default/httproutes/shop/status");
    let version = route(&mut snap, "default", "shop")
        .metadata
        .resource_version
        .clone();
    assert_eq!(
        shop.body["metadata"],
        json!({"name": "shop", "namespace": "default", "resourceVersion": version.unwrap()})
    );
    let class = seen_at(&seen, "/gatewayclasses/fleetgate/status");
    assert_eq!(class.body["kind"], "GatewayClass");
    assert_eq!(class.body["metadata"], json!({"name": "fleetgate"}));

    written(&mut snap.gateway_api, &seen);
    let again = pass(&snap, &Metrics::default(), &[]).await;
    assert!(
        again.is_empty(),
        "nothing changed, nothing written: {again:#?}"
    );
}

/// The fleet with every status of ours already written.
async fn settled() -> Snapshot {
    let mut snap = fleet();
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    written(&mut snap.gateway_api, &seen);
    snap
}

#[tokio::test]
async fn a_backend_that_goes_missing_sends_one_apply_for_its_route() {
    let mut snap = settled().await;
    let route = route(&mut snap, "staging", "shop");
    let rules = route.spec.rules.as_mut().unwrap();
    rules[0].backend_refs.as_mut().unwrap()[0].name = "no-such-service".into();
    let generation = route.metadata.generation.unwrap_or(1) + 1;
    route.metadata.generation = Some(generation);
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/apis/gateway.networking.k8s.io/v1/namespaces/staging/httproutes/shop/status"]
    );
    let resolved = &seen[0].body["status"]["parents"][0]["conditions"][1];
    assert_eq!(resolved["type"], "ResolvedRefs");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert_eq!(resolved["observedGeneration"], json!(generation));
}

#[tokio::test]
async fn a_listener_added_sends_one_apply_for_its_gateway() {
    let mut snap = settled().await;
    let gateway = (snap.gateway_api.gateways.iter_mut())
        .find(|g| g.metadata.name.as_deref() == Some("static-address"))
        .unwrap();
    let mut listener = gateway.spec.listeners[0].clone();
    listener.name = "http-alt".into();
    listener.port = 8081;
    gateway.spec.listeners.push(listener);
    gateway.metadata.generation = Some(2);
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/static-address/status"]
    );
    let listeners: Vec<&str> = (seen[0].body["status"]["listeners"]
        .as_array()
        .unwrap()
        .iter())
    .map(|l| l["name"].as_str().unwrap())
    .collect();
    assert_eq!(listeners, ["http", "http-alt"]);
}

#[tokio::test]
async fn another_controllers_parents_entries_are_kept_as_they_are() {
    let mut snap = fleet();
    let theirs = route(&mut snap, "default", "on-envoy-gateway")
        .status
        .clone()
        .unwrap();
    let theirs_json = serde_json::to_value(&theirs.parents[0]).unwrap();
    route(&mut snap, "default", "shop").status = Some(theirs.clone());
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    // The list is atomic: applying ours alone would drop theirs, so it goes as it was, first.
    let shop = seen_at(&seen, "/namespaces/default/httproutes/shop/status");
    let parents = shop.body["status"]["parents"].as_array().unwrap();
    assert_eq!(parents[0], theirs_json);
    let controllers: Vec<&str> = parents
        .iter()
        .map(|p| p["controllerName"].as_str().unwrap())
        .collect();
    assert_eq!(
        controllers,
        [
            "gateway.envoyproxy.io/gatewayclass-controller",
            "fleetgate.io/gateway-controller"
        ]
    );
    // The route that only the other controller serves is not written at all.
    assert!(
        !seen.iter().any(|s| s.path.contains("on-envoy-gateway")),
        "{seen:#?}"
    );

    // Once ours is written, another write of theirs (their conditions changed) needs nothing of us.
    written(&mut snap.gateway_api, &seen);
    let shop = route(&mut snap, "default", "shop");
    shop.status.as_mut().unwrap().parents[0].conditions[0].message = "changed by them".into();
    assert!(pass(&snap, &Metrics::default(), &[]).await.is_empty());
}

#[tokio::test]
async fn our_entry_is_removed_from_a_route_no_longer_ours_and_theirs_stays() {
    let mut snap = settled().await;
    let status = route(&mut snap, "default", "on-envoy-gateway")
        .status
        .as_mut()
        .unwrap();
    let theirs = serde_json::to_value(&status.parents[0]).unwrap();
    let mut stale = status.parents[0].clone();
    stale.controller_name = "fleetgate.io/gateway-controller".into();
    stale.parent_ref.name = "shop-gateway".into();
    status.parents.push(stale);
    let seen = pass(&snap, &Metrics::default(), &[]).await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(seen[0]
        .path
        .ends_with("/namespaces/default/httproutes/on-envoy-gateway/status"));
    assert_eq!(seen[0].body["status"]["parents"], json!([theirs]));
}

#[tokio::test]
async fn a_refused_apply_is_counted_and_the_others_still_go() {
    let snap = fleet();
    let metrics = Metrics::default();
    let refused =
        "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/shop-gateway/status";
    // A conflict (a route written meanwhile by another controller) is retried, not an error.
    let raced = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/shop/status";
    let seen = pass(&snap, &metrics, &[(refused, 500), (raced, 409)]).await;
    assert_eq!(seen.len(), golden().len());
    assert!(seen.iter().any(|s| s.path == refused) && seen.iter().any(|s| s.path == raced));
    let text = metrics.render();
    assert!(
        text.contains("fleetgate_errors_total{kind=\"gateway_api_status\"} 1\n"),
        "{text}"
    );
}
