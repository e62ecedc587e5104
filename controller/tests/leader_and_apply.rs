//! Leader election and the Higress WasmPlugin hand-off against kube's mock API service: each
//! test plays the API server, asserting the method, URI and body of every call.

mod common;

use std::time::Duration;

use common::{mock_client, ApiHandle};

use fleetgate_controller::handoff;
use fleetgate_controller::leader::Elector;
use http::{Method, Request, Response, StatusCode};
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

async fn body_json(req: Request<Body>) -> Value {
    let bytes = http_body_util::BodyExt::collect(req.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
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
