//! The Gateway API watches against kube's mock service: objects listed and watched into the
//! store (the conformance-shaped objects of `examples/fleet/gateway-api`), a relist after a 410
//! Gone dropping deleted ones, an unreadable object left out alone, the version fallback of
//! `ServiceImport`, and a fleet without the CRDs: the Ingress watch unaffected, one log line per
//! kind, discovery again only every few minutes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, mock_client, ApiHandle};
use fleetgate_controller::gateway_api::watch::{
    self as gw_watch, Kind, ABSENT_RETRY, DISCOVERY_RETRY,
};
use fleetgate_controller::store::{Snapshot, Store};
use fleetgate_controller::watch;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

/// The items of a `kubectl get -o yaml` list of `examples/fleet/gateway-api`.
fn fixture(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/fleet/gateway-api")
        .join(file);
    let list: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn ok(body: &Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(body).unwrap()))
}

fn list(rv: &str, items: Vec<Value>) -> Response<Body> {
    ok(
        &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn watch_events(events: &[Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    Response::new(Body::from(body))
}

fn not_found() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"});
    let mut r = ok(&status);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// `/apis/{group_version}` as the API server lists a group version's resources.
fn resources(group_version: &str, plurals: &[(&str, &str, bool)]) -> Response<Body> {
    let resources: Vec<Value> = (plurals.iter())
        .map(|(name, kind, namespaced)| {
            json!({"name": name, "singularName": "", "kind": kind,
            "namespaced": namespaced, "verbs": ["get", "list", "watch", "patch"]})
        })
        .collect();
    ok(
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources}),
    )
}

fn gateway_v1() -> Response<Body> {
    resources(
        "gateway.networking.k8s.io/v1",
        &[
            ("gatewayclasses", "GatewayClass", false),
            ("gateways", "Gateway", true),
            ("httproutes", "HTTPRoute", true),
        ],
    )
}

async fn next(handle: &mut ApiHandle) -> (String, tower_test::mock::SendResponse<Response<Body>>) {
    let (req, send): (Request<Body>, _) = handle.next_request().await.expect("a request");
    (req.uri().to_string(), send)
}

fn snapshot(store: &Store) -> Snapshot {
    store.snapshot(tokio::time::Instant::now(), Duration::from_secs(30))
}

fn route_names(store: &Store) -> Vec<String> {
    let snap = snapshot(store);
    let mut names: Vec<String> = (snap.gateway_api.http_routes.iter())
        .map(|r| {
            format!(
                "{}/{}",
                r.metadata.namespace.as_deref().unwrap(),
                r.metadata.name.as_deref().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// A store fed by the watch of `kind` through the mock API server, whose handle is returned.
fn watching(kind: Kind) -> (Store, tokio::task::JoinHandle<()>, ApiHandle) {
    let (client, handle) = mock_client();
    let store = Store::default();
    let task = tokio::spawn(gw_watch::watch_kind(client, store.clone(), kind, |_| {}));
    (store, task, handle)
}

fn named(items: &[Value], ns: &str, name: &str) -> Value {
    (items.iter())
        .find(|i| i["metadata"]["namespace"] == ns && i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {ns}/{name}"))
        .clone()
}

#[tokio::test(start_paused = true)]
async fn routes_are_listed_watched_and_relisted_and_an_unreadable_one_is_left_out() {
    let (logs, _guard) = capture_logs();
    let (store, task, mut handle) = watching(Kind::HttpRoute);
    let routes = fixture("httproutes.yaml");
    // A port that is not a number: the API's schema would refuse it, a newer or broken CRD might not.
    let mut bad = named(&routes, "default", "wrong-host");
    bad["metadata"]["name"] = json!("unreadable");
    bad["spec"]["parentRefs"][0]["port"] = json!("eighty");

    let (uri, send) = next(&mut handle).await;
    assert_eq!(uri, "/apis/gateway.networking.k8s.io/v1");
    send.send_response(gateway_v1());
    let (uri, send) = next(&mut handle).await;
    assert!(
        uri.starts_with("/apis/gateway.networking.k8s.io/v1/httproutes?"),
        "{uri}"
    );
    assert!(!uri.contains("watch=true"), "a list first: {uri}");
    let mut listed = routes.clone();
    listed.push(bad.clone());
    send.send_response(list("500", listed));

    // A watch adds a route; the bad one is modified and still does not read.
    let mut added = named(&routes, "default", "missing-backend");
    added["metadata"]["name"] = json!("added");
    added["metadata"]["resourceVersion"] = json!("501");
    bad["metadata"]["resourceVersion"] = json!("502");
    let (uri, send) = next(&mut handle).await;
    assert!(
        uri.contains("watch=true") && uri.contains("resourceVersion=500"),
        "{uri}"
    );
    send.send_response(watch_events(&[
        json!({"type": "ADDED", "object": added}),
        json!({"type": "MODIFIED", "object": bad}),
    ]));
    let mut want: Vec<String> = (routes.iter())
        .map(|r| {
            format!(
                "{}/{}",
                r["metadata"]["namespace"].as_str().unwrap(),
                r["metadata"]["name"].as_str().unwrap()
            )
        })
        .chain(["default/added".to_string()])
        .collect();
    want.sort();
    eventually("the listed and added routes", || {
        route_names(&store) == want
    })
    .await;
    assert!(
        !snapshot(&store).gateway_api_listed,
        "only HTTPRoutes were listed"
    );
    assert!(!route_names(&store).contains(&"default/unreadable".to_string()));
    let shop = (snapshot(&store).gateway_api.http_routes.into_iter())
        .find(|r| r.metadata.name.as_deref() == Some("two-parents"))
        .unwrap();
    assert_eq!(
        shop.spec.parent_refs.unwrap().len(),
        3,
        "read into the crate's type"
    );

    // The watch expires; `added` was deleted meanwhile: the relist replaces the set.
    let (uri, send) = next(&mut handle).await;
    assert!(
        uri.contains("watch=true") && uri.contains("resourceVersion=502"),
        "{uri}"
    );
    send.send_response(watch_events(&[
        json!({"type": "ERROR", "object": {"apiVersion": "v1",
        "kind": "Status", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
        "message": "too old resource version: 500 (600)"}}),
    ]));
    let (uri, send) = next(&mut handle).await;
    assert!(!uri.contains("watch=true"), "a relist: {uri}");
    send.send_response(list("600", routes[1..].to_vec()));
    let gone = format!(
        "{}/{}",
        routes[0]["metadata"]["namespace"].as_str().unwrap(),
        routes[0]["metadata"]["name"].as_str().unwrap()
    );
    want.retain(|n| *n != "default/added" && *n != gone);
    eventually("the relisted routes", || route_names(&store) == want).await;
    // Listed, then modified: still the same error, said once.
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let said: Vec<&str> = (text.lines())
        .filter(|l| l.contains("cannot read the fleet's HTTPRoute"))
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(
        said[0].contains("name=unreadable") && said[0].contains("eighty"),
        "{text}"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_crd_removed_drops_its_objects_and_is_looked_for_again_later() {
    let (logs, _guard) = capture_logs();
    let (store, task, mut handle) = watching(Kind::Gateway);
    let (_, send) = next(&mut handle).await;
    send.send_response(gateway_v1());
    let (_, send) = next(&mut handle).await;
    send.send_response(list("9", fixture("gateways.yaml")));
    eventually("the gateways", || {
        !snapshot(&store).gateway_api.gateways.is_empty()
    })
    .await;
    // The CRD is deleted: the watch, then discovery, answer 404.
    let (uri, send) = next(&mut handle).await;
    assert!(uri.contains("watch=true"), "{uri}");
    send.send_response(not_found());
    let asked = tokio::time::Instant::now();
    let (uri, send) = next(&mut handle).await;
    assert_eq!(uri, "/apis/gateway.networking.k8s.io/v1");
    assert!(
        asked.elapsed() >= DISCOVERY_RETRY,
        "not at once: {:?}",
        asked.elapsed()
    );
    send.send_response(not_found());
    eventually("the gateways dropped", || {
        snapshot(&store).gateway_api.gateways.is_empty()
    })
    .await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("does not serve Gateway (CRD not installed)")
            .count(),
        1,
        "{text}"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn service_imports_fall_back_to_v1alpha1_when_v1beta1_is_not_served() {
    let (store, task, mut handle) = watching(Kind::ServiceImport);
    let (uri, send) = next(&mut handle).await;
    assert_eq!(uri, "/apis/multicluster.x-k8s.io/v1beta1");
    send.send_response(not_found());
    let (uri, send) = next(&mut handle).await;
    assert_eq!(uri, "/apis/multicluster.x-k8s.io/v1alpha1");
    send.send_response(resources(
        "multicluster.x-k8s.io/v1alpha1",
        &[
            ("serviceimports", "ServiceImport", true),
            ("serviceexports", "ServiceExport", true),
        ],
    ));
    let (uri, send) = next(&mut handle).await;
    assert!(
        uri.starts_with("/apis/multicluster.x-k8s.io/v1alpha1/serviceimports?"),
        "{uri}"
    );
    send.send_response(list("7", fixture("serviceimports.yaml")));
    eventually("the imports", || {
        snapshot(&store).gateway_api.service_imports.len() == 1
    })
    .await;
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn namespaces_labels_reach_the_snapshot_and_only_label_changes_wake_derive() {
    let (client, mut handle) = mock_client();
    let store = Store::default();
    let task = tokio::spawn(watch::watch_namespaces(client, store.clone(), |_| {}));
    let (uri, send) = next(&mut handle).await;
    assert!(uri.starts_with("/api/v1/namespaces?"), "{uri}");
    let namespaces = fixture("namespaces.yaml");
    send.send_response(list("40", namespaces.clone()));
    eventually("the namespaces", || snapshot(&store).namespaces.len() == 3).await;
    let snap = snapshot(&store);
    assert_eq!(
        snap.namespaces["staging"]["fleetgate.io/shared-gateway"],
        "true"
    );
    store.changed().await; // the relist's wake-up

    let wait = Duration::from_secs(1);
    let mut staging = namespaces[1].clone();
    staging["metadata"]["annotations"] = json!({"owner": "team-b"});
    staging["metadata"]["resourceVersion"] = json!("41");
    let (uri, send) = next(&mut handle).await;
    assert!(uri.contains("watch=true"), "{uri}");
    send.send_response(watch_events(&[
        json!({"type": "MODIFIED", "object": staging}),
    ]));
    let woken = tokio::time::timeout(wait, store.changed()).await;
    assert!(woken.is_err(), "an annotation is nothing derive reads");

    staging["metadata"]["labels"]["fleetgate.io/shared-gateway"] = json!("false");
    staging["metadata"]["resourceVersion"] = json!("42");
    let (uri, send) = next(&mut handle).await;
    assert!(uri.contains("resourceVersion=41"), "{uri}");
    send.send_response(watch_events(&[
        json!({"type": "MODIFIED", "object": staging}),
    ]));
    tokio::time::timeout(wait, store.changed())
        .await
        .expect("a label change wakes derive");
    assert_eq!(
        snapshot(&store).namespaces["staging"]["fleetgate.io/shared-gateway"],
        "false"
    );
    task.abort();
}

/// Log lines at info and above, captured for this (current-thread) test.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::default());
    let out = buf.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || buf.clone())
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(start_paused = true)]
async fn without_the_crds_ingresses_still_flow_with_one_log_line_per_kind() {
    let (logs, _guard) = capture_logs();
    let (client, mut handle) = mock_client();
    let store = Store::default();
    let mut tasks = vec![
        tokio::spawn(watch::watch_ingresses(
            client.clone(),
            store.clone(),
            |_| {},
        )),
        tokio::spawn(watch::watch_namespaces(
            client.clone(),
            store.clone(),
            |_| {},
        )),
    ];
    for kind in Kind::ALL {
        tasks.push(tokio::spawn(gw_watch::watch_kind(
            client.clone(),
            store.clone(),
            kind,
            |_| {},
        )));
    }
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default", "resourceVersion": "3"},
        "spec": {"ingressClassName": "fleetgate"}});
    let discoveries = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = discoveries.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let uri = req.uri().to_string();
            let listed = if uri.starts_with("/apis/networking.k8s.io/v1/ingresses?") {
                Some(vec![ingress.clone()])
            } else if uri.starts_with("/api/v1/namespaces?") {
                Some(fixture("namespaces.yaml"))
            } else {
                None
            };
            if let Some(items) = listed {
                if uri.contains("watch=true") {
                    held.push(send);
                } else {
                    send.send_response(list("3", items));
                }
            } else {
                assert!(
                    !uri.contains('?'),
                    "only discovery of an absent kind: {uri}"
                );
                seen.lock().unwrap().push(uri);
                send.send_response(not_found());
            }
        }
    });
    // Twenty minutes: discovery at the start and then every five minutes, no more.
    tokio::time::sleep(Duration::from_secs(20 * 60) + Duration::from_millis(10)).await;
    let snap = snapshot(&store);
    assert!(snap.fleet_synced);
    assert_eq!(snap.ingresses.len(), 1, "the Ingress path works alone");
    assert!(snap.gateway_api.gateways.is_empty() && snap.gateway_api.service_imports.is_empty());
    assert!(
        snap.gateway_api_listed,
        "absent kinds count as listed (empty)"
    );
    let rounds = 1 + (20 * 60) / ABSENT_RETRY.as_secs() as usize;
    let seen = discoveries.lock().unwrap().clone();
    // Each round: gateway v1 by GatewayClass, Gateway, HTTPRoute and ReferenceGrant; then
    // ReferenceGrant's and ServiceImport's older versions.
    for (gv, per_round) in [
        ("gateway.networking.k8s.io/v1", 4),
        ("gateway.networking.k8s.io/v1beta1", 1),
        ("multicluster.x-k8s.io/v1beta1", 1),
        ("multicluster.x-k8s.io/v1alpha1", 1),
    ] {
        let n = seen.iter().filter(|u| **u == format!("/apis/{gv}")).count();
        assert_eq!(n, per_round * rounds, "{gv}: {seen:?}");
    }
    assert_eq!(seen.len(), 7 * rounds, "{seen:?}");
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    for kind in Kind::ALL {
        let said = format!("does not serve {} (CRD not installed)", kind.name());
        assert_eq!(text.matches(&said).count(), 1, "{}: {text}", kind.name());
    }
    for t in tasks {
        t.abort();
    }
    server.abort();
}

/// The deploy manifests' ClusterRole lets every watch here, and the status applies, through.
#[test]
fn the_cluster_role_grants_the_watches_and_the_status_writes() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    let grants = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            let has = |field: &str, v: &str| r[field].as_array().unwrap().iter().any(|x| x == v);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for kind in Kind::ALL {
        let r = kind.resource("v1");
        for verb in ["get", "list", "watch"] {
            assert!(grants(&r.group, &r.plural, verb), "{verb} {}", r.plural);
        }
    }
    assert!(grants("", "namespaces", "watch"));
    for kind in [Kind::GatewayClass, Kind::Gateway, Kind::HttpRoute] {
        let r = kind.resource("v1");
        assert!(
            grants(&r.group, &format!("{}/status", r.plural), "patch"),
            "{}",
            r.plural
        );
    }
}
