//! Leader election and the Higress WasmPlugin hand-off against kube's mock API service: each
//! test plays the API server, asserting the method, URI and body of every call.

mod common;

use std::time::Duration;

use common::{body_json, mock_client, ApiHandle};

use fleetgate_controller::handoff;
use fleetgate_controller::leader::Elector;
use http::{Method, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "leases \"fleetgate\" not found"})
}

fn conflict() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "reason": "Conflict", "code": 409, "message": "the object has been modified"})
}

fn lease(holder: &str, renewed: &str, rv: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "fleetgate", "namespace": "fleetgate-system", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "acquireTime": renewed, "renewTime": renewed, "leaseTransitions": 3}})
}

/// An elector for Lease `fleetgate-system/fleetgate` (15 s) and the API it talks to.
fn elector(identity: &str) -> (Elector, ApiHandle) {
    let (client, api) = mock_client();
    let e = Elector::new(
        client,
        "fleetgate-system",
        "fleetgate",
        identity,
        Duration::from_secs(15),
    );
    (e, api)
}

const LEASE_URI: &str = "/apis/coordination.k8s.io/v1/namespaces/fleetgate-system/leases";

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let (elector, mut api) = elector("replica-a");
    let server = tokio::spawn(async move {
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(
            (req.method(), req.uri().path()),
            (&Method::GET, &*format!("{LEASE_URI}/fleetgate"))
        );
        send.send_response(respond(StatusCode::NOT_FOUND, &not_found()));
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!((req.method(), req.uri().path()), (&Method::POST, LEASE_URI));
        let body = body_json(req).await;
        assert_eq!(body["spec"]["holderIdentity"], "replica-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        send.send_response(respond(StatusCode::CREATED, &body));
    });
    assert!(elector.try_acquire_or_renew().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn a_live_lease_held_by_another_replica_is_left_alone() {
    let (elector, mut api) = elector("replica-b");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let server = tokio::spawn(async move {
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::GET);
        send.send_response(respond(StatusCode::OK, &lease("replica-a", &now, "7")));
        // No write may follow: once this handle is dropped, any further call errors out.
    });
    assert!(!elector.try_acquire_or_renew().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version_and_a_race_loses_cleanly() {
    let (elector, mut api) = elector("replica-b");
    let server = tokio::spawn(async move {
        for outcome in [StatusCode::OK, StatusCode::CONFLICT] {
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(req.method(), Method::GET);
            send.send_response(respond(
                StatusCode::OK,
                &lease("replica-a", "2026-01-01T00:00:00Z", "7"),
            ));
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(
                (req.method(), req.uri().path()),
                (&Method::PUT, &*format!("{LEASE_URI}/fleetgate"))
            );
            let body = body_json(req).await;
            assert_eq!(
                body["metadata"]["resourceVersion"], "7",
                "optimistic concurrency"
            );
            assert_eq!(body["spec"]["holderIdentity"], "replica-b");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            if outcome == StatusCode::OK {
                send.send_response(respond(outcome, &body));
            } else {
                send.send_response(respond(outcome, &conflict()));
            }
        }
    });
    assert!(
        elector.try_acquire_or_renew().await.unwrap(),
        "takes over an expired lease"
    );
    assert!(
        !elector.try_acquire_or_renew().await.unwrap(),
        "a 409 means another replica won"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn the_wasmplugin_gets_only_its_default_config_by_server_side_apply() {
    let (client, mut api) = mock_client();
    let cfg = fleetgate_plugin::config::parse_wire(
        br#"{"version": 1, "clusters": [{"id": "hz-a"}], "routes": [{"name": "r", "backends": [{"cluster": "hz-a", "upstream": "u"}]}]}"#,
    )
    .unwrap();
    let expected = serde_json::to_value(&cfg).unwrap();
    let server = tokio::spawn(async move {
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/apis/extensions.higress.io/v1alpha1/namespaces/higress-system/wasmplugins/fleetgate"
        );
        let query = req.uri().query().unwrap_or("").to_string();
        assert!(
            query.contains("fieldManager=fleetgate-controller"),
            "{query}"
        );
        assert!(query.contains("force=true"), "{query}");
        assert_eq!(
            req.headers().get("content-type").unwrap(),
            "application/apply-patch+yaml"
        );
        let body = body_json(req).await;
        assert_eq!(body["spec"]["defaultConfig"], expected);
        assert_eq!(
            body["spec"].as_object().unwrap().len(),
            1,
            "only defaultConfig is owned"
        );
        send.send_response(respond(StatusCode::OK, &body));
    });
    handoff::apply_wasmplugin(client, "higress-system", "fleetgate", &cfg)
        .await
        .unwrap();
    server.await.unwrap();
}

/// Plays a Lease API server for one replica's client: GET, POST and PUT (with
/// resourceVersion checks) on one shared Lease.
fn serve_lease(mut api: ApiHandle, store: std::sync::Arc<std::sync::Mutex<Option<Value>>>) {
    tokio::spawn(async move {
        while let Some((req, send)) = api.next_request().await {
            let method = req.method().clone();
            let body = if method == Method::GET {
                None
            } else {
                Some(body_json(req).await)
            };
            let mut lease = store.lock().unwrap();
            let rv = |l: &Value| {
                l["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("0")
                    .to_owned()
            };
            let (status, answer) = match (method, body) {
                (Method::GET, _) => match lease.as_ref() {
                    Some(l) => (StatusCode::OK, l.clone()),
                    None => (StatusCode::NOT_FOUND, not_found()),
                },
                (_, Some(mut new)) if lease.as_ref().is_none_or(|l| rv(l) == rv(&new)) => {
                    let next = lease
                        .as_ref()
                        .map_or(1, |l| rv(l).parse::<u64>().unwrap() + 1);
                    new["metadata"]["resourceVersion"] = json!(next.to_string());
                    *lease = Some(new.clone());
                    (StatusCode::OK, new)
                }
                _ => (StatusCode::CONFLICT, conflict()),
            };
            send.send_response(respond(status, &answer));
        }
    });
}

#[tokio::test]
async fn a_leader_that_stops_releases_the_lease_and_the_follower_takes_over_within_two_seconds() {
    let store = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (a, api_a) = elector("replica-a");
    let (b, api_b) = elector("replica-b");
    serve_lease(api_a, store.clone());
    serve_lease(api_b, store.clone());
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the Lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b follows a live Lease"
    );
    assert!(!b.release().await.unwrap(), "b holds nothing to release");

    let stopped = std::time::Instant::now();
    assert!(a.release().await.unwrap(), "a releases on shutdown");
    let held = store.lock().unwrap().clone().unwrap();
    assert!(held["spec"]["holderIdentity"].is_null(), "{held}");
    // b's election loop: try, then sleep its follower period.
    loop {
        tokio::time::sleep(b.retry_period(false)).await;
        if b.try_acquire_or_renew().await.unwrap() {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(5), "no takeover");
    }
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(2), "takeover after {took:?}");
    let held = store.lock().unwrap().clone().unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "replica-b");
    assert!(
        !a.try_acquire_or_renew().await.unwrap(),
        "a stays out once b holds it"
    );
}
