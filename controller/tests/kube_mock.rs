//! The kube layer against kube's mock service (`tower_test::mock::pair()`), in the style of
//! kube-rs/controller-rs: initial list + watch events, relist after a 410 Gone, a member
//! going unreachable -> `unknown` after the grace period, and a controller restarted while a
//! member's API is down becoming ready (paused tokio time).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, mock_client, ApiHandle};

use fleetgate_controller::admin::Metrics;
use fleetgate_controller::derive::{self, Contact, DeriveOptions};
use fleetgate_controller::endpoints::Relist;
use fleetgate_controller::handoff::ConfigCell;
use fleetgate_controller::run::Publisher;
use fleetgate_controller::store::Store;
use fleetgate_controller::watch;
use fleetgate_plugin::config::ClusterState;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

fn slice(name: &str, svc: &str, rv: &str, ready: &[bool]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
                      "labels": {"kubernetes.io/service-name": svc}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": ready.iter().enumerate().map(|(i, r)| json!({
            "addresses": [format!("10.0.0.{i}")], "conditions": {"ready": r}
        })).collect::<Vec<_>>(),
    })
}

/// `shop`: `http: 80 -> 8080`, `metrics: 9090 -> metrics`.
fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "shop", "namespace": "default", "resourceVersion": "3"},
        "spec": {"ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"}]},
    })
}

fn list(rv: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({
        "apiVersion": "v1", "kind": "List",
        "metadata": {"resourceVersion": rv}, "items": items,
    });
    Response::builder()
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn watch_events(events: &[Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    Response::builder().body(Body::from(body)).unwrap()
}

fn gone() -> Value {
    json!({"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": "too old resource version: 1 (40)",
        "reason": "Expired", "code": 410}})
}

/// Scenario steps for the mocked API server: each asserts the request and answers it.
enum Step {
    List {
        rv: &'static str,
        items: Vec<Value>,
    },
    Watch {
        from_rv: &'static str,
        events: Vec<Value>,
    },
    Fail,
}

type Held = Vec<tower_test::mock::SendResponse<Response<Body>>>;

/// The next EndpointSlice request. Service requests on the way are answered: the list with
/// `shop`, the watch held open (kept in `held`, never answered).
async fn next_slice_request(
    handle: &mut ApiHandle,
    held: &mut Held,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    loop {
        let (req, send) = handle.next_request().await.expect("request expected");
        let uri = req.uri().to_string();
        if !uri.starts_with("/api/v1/services?") {
            return (req, send);
        }
        if uri.contains("watch=true") {
            held.push(send);
        } else {
            send.send_response(list("3", vec![service()]));
        }
    }
}

async fn serve(handle: &mut ApiHandle, held: &mut Held, steps: Vec<Step>) {
    for step in steps {
        let (req, send) = next_slice_request(handle, held).await;
        let uri = req.uri().to_string();
        assert!(
            uri.starts_with("/apis/discovery.k8s.io/v1/endpointslices?"),
            "{uri}"
        );
        assert!(
            uri.contains("labelSelector=kubernetes.io%2Fservice-name"),
            "{uri}"
        );
        match step {
            Step::List { rv, items } => {
                assert!(!uri.contains("watch=true"), "expected a list: {uri}");
                send.send_response(list(rv, items));
            }
            Step::Watch { from_rv, events } => {
                assert!(uri.contains("watch=true"), "expected a watch: {uri}");
                assert!(uri.contains(&format!("resourceVersion={from_rv}")), "{uri}");
                send.send_response(watch_events(&events));
            }
            Step::Fail => send.send_error("connection refused"),
        }
    }
}

fn slice_names(store: &Store) -> Vec<String> {
    let snap = store.snapshot(tokio::time::Instant::now(), Duration::from_secs(30));
    let mut names: Vec<String> = snap.members[0]
        .index
        .services()
        .flat_map(|(_, e)| e.slices.iter().map(|(n, _)| n.to_string()))
        .collect();
    names.sort();
    names
}

#[tokio::test(start_paused = true)]
async fn member_watch_lists_applies_events_and_relists_after_410_gone() {
    let (client, mut handle) = mock_client();
    let store = Store::default();
    store.upsert_member("hz-a", Some("cn-hangzhou-h".into()), None);
    let task = tokio::spawn(watch::watch_member(
        "hz-a".into(),
        client,
        store.clone(),
        |_| {},
    ));
    let mut held = Held::new();

    // Initial list, then a watch that adds, modifies and finally expires (410).
    serve(
        &mut handle,
        &mut held,
        vec![
            Step::List { rv: "10", items: vec![slice("shop-1", "shop", "9", &[true, true])] },
            Step::Watch {
                from_rv: "10",
                events: vec![
                    json!({"type": "ADDED", "object": slice("cart-1", "cart", "11", &[true])}),
                    json!({"type": "MODIFIED", "object": slice("shop-1", "shop", "12", &[true, false])}),
                ],
            },
        ],
    )
    .await;
    eventually("watch events applied", || {
        slice_names(&store) == ["cart-1", "shop-1"]
    })
    .await;
    let contacts = store.contacts(tokio::time::Instant::now(), Duration::from_secs(30));
    assert_eq!(contacts["hz-a"], Contact::Live);

    // The watch is resumed from the last seen version and then expires: the watcher relists and
    // the relist replaces the set (shop-1 was deleted while we were not watching).
    serve(
        &mut handle,
        &mut held,
        vec![
            Step::Watch {
                from_rv: "12",
                events: vec![gone()],
            },
            Step::List {
                rv: "40",
                items: vec![slice("cart-1", "cart", "11", &[true])],
            },
        ],
    )
    .await;
    eventually("relist applied", || slice_names(&store) == ["cart-1"]).await;
    let contacts = store.contacts(tokio::time::Instant::now(), Duration::from_secs(30));
    assert_eq!(contacts["hz-a"], Contact::Live);
    task.abort();
}

/// hz-a served by a plain live snapshot (`shop`, one ready endpoint); hz-b watched through the
/// mock API server, whose handle is returned.
fn hz_a_live_hz_b_mocked() -> (Store, tokio::task::JoinHandle<()>, ApiHandle) {
    let (client, handle) = mock_client();
    let store = Store::default();
    store.upsert_member("hz-a", None, None);
    store.upsert_member("hz-b", None, None);
    let svc = serde_json::from_value(service()).unwrap();
    store.replace_services("hz-a", Relist::of_services(&[svc]));
    let slice = serde_json::from_value(slice("shop-a", "shop", "1", &[true])).unwrap();
    store.replace_slices("hz-a", Relist::of_slices(&[slice]));
    let task = tokio::spawn(watch::watch_member(
        "hz-b".into(),
        client,
        store.clone(),
        |_| {},
    ));
    (store, task, handle)
}

#[tokio::test(start_paused = true)]
async fn unreachable_member_becomes_unknown_after_the_grace_period_and_keeps_endpoints() {
    let grace = Duration::from_secs(30);
    let (store, task, mut handle) = hz_a_live_hz_b_mocked();
    let mut held = Held::new();
    serve(
        &mut handle,
        &mut held,
        vec![
            Step::List {
                rv: "5",
                items: vec![slice("shop-b", "shop", "5", &[true, true])],
            },
            Step::Watch {
                from_rv: "5",
                events: vec![],
            },
            Step::Fail,
        ],
    )
    .await;
    let failed_at = tokio::time::Instant::now();
    // Keep failing every retry (list or watch) from now on.
    let server = tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            send.send_error("connection refused");
        }
    });
    let contact = |s: &Store| s.contacts(tokio::time::Instant::now(), grace)["hz-b"];
    // Within the grace period the member is still live.
    tokio::time::sleep_until(failed_at + Duration::from_secs(20)).await;
    assert_eq!(contact(&store), Contact::Live);
    // After it: unknown, with its last endpoints kept.
    tokio::time::sleep_until(failed_at + grace + Duration::from_secs(1)).await;
    assert_eq!(contact(&store), Contact::Lost);

    let snap = store.snapshot(tokio::time::Instant::now(), grace);
    let ing = shop_ingress();
    let d = derive::derive_config(&[ing], &snap.members, &DeriveOptions::default()).unwrap();
    drop(held);
    assert_eq!(d.config().clusters[0].state, ClusterState::Healthy);
    assert_eq!(d.config().clusters[1].state, ClusterState::Unknown);
    assert_eq!(
        d.config().routes[0].backends[1].ready,
        Some(2),
        "last endpoints kept"
    );
    task.abort();
    server.abort();
}

fn shop_ingress() -> k8s_openapi::api::networking::v1::Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"ingressClassName": "fleetgate", "rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop", "port": {"number": 80}}}}]}}]}
    }))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_restarted_controller_becomes_ready_while_a_member_api_is_down() {
    let grace = Duration::from_secs(30);
    // hz-b's API server refuses every request from the start: it never lists.
    let (store, task, mut handle) = hz_a_live_hz_b_mocked();
    let server = tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            send.send_error("connection refused");
        }
    });
    store.replace_ingresses(vec![shop_ingress()]);
    let (cell, ready) = (ConfigCell::default(), Arc::new(AtomicBool::new(false)));
    let mut publisher = Publisher::new(
        DeriveOptions::default(),
        grace,
        store.clone(),
        cell.clone(),
        Metrics::default(),
        ready.clone(),
    );
    // Within the grace period the controller waits for hz-b rather than publish a guess.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(publisher.step().is_none());
    assert!(!ready.load(Ordering::Relaxed));
    // Then it publishes with hz-b unknown (no endpoints known) and becomes ready.
    tokio::time::sleep(grace).await;
    let step = publisher.step().expect("a config is published");
    assert!(ready.load(Ordering::Relaxed));
    assert_eq!(
        cell.current().map(|p| p.revision.clone()),
        Some(step.derived.revision.clone())
    );
    let c = step.derived.config();
    assert_eq!(c.clusters[0].state, ClusterState::Healthy);
    assert_eq!(c.clusters[1].state, ClusterState::Unknown);
    let ready_counts: Vec<_> = c.routes[0].backends.iter().map(|b| b.ready).collect();
    assert_eq!(ready_counts, vec![Some(1), None]);
    task.abort();
    server.abort();
}
