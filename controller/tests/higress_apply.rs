//! Applying the Higress wiring against kube's mock API service: each test plays the API
//! server, asserting the method, URI and body of every call (namespaces checked before any
//! write, server-side apply as `fleetgate-controller`, garbage collection by owner label).

mod common;
mod fleet_fixture;

use std::collections::BTreeSet;

use common::{body_json, mock_client, ApiHandle};
use fleetgate_controller::cli;
use fleetgate_controller::derive::DeriveOptions;
use fleetgate_controller::higress::apply::{apply, ApplyError, ApplyReport, Publisher};
use fleetgate_controller::higress::HigressObject;
use fleetgate_controller::higress::{HigressOptions, HIGRESS_UPSTREAM_TEMPLATE};
use http::{Method, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": reason})
}

fn namespaces(ns: &[&str]) -> BTreeSet<String> {
    ns.iter().map(|s| s.to_string()).collect()
}

fn objects() -> Vec<HigressObject> {
    let labels = json!({"app.kubernetes.io/managed-by": "fleetgate-controller"});
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "shop-hz-a", "namespace": "default", "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop-shop-hz-a-80", "namespace": "default", "labels": labels},
        "spec": {"ingressClassName": "higress"}});
    vec![
        HigressObject::Service(serde_json::from_value(svc).unwrap()),
        HigressObject::Ingress(serde_json::from_value(ing).unwrap()),
    ]
}

/// Answer `GET /api/v1/namespaces/<ns>` with the namespace (or 404).
async fn namespace(api: &mut ApiHandle, ns: &str, exists: bool) {
    let (req, send) = api.next_request().await.expect("namespace check");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), format!("/api/v1/namespaces/{ns}"));
    send.send_response(if exists {
        respond(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
    } else {
        respond(StatusCode::NOT_FOUND, &status(404, "NotFound"))
    });
}

/// Expect a server-side apply of `path` by `fleetgate-controller`; answer `code`.
async fn expect_apply(api: &mut ApiHandle, path: &str, kind: &str, code: u16) {
    let (req, send) = api.next_request().await.expect("apply");
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default().to_string();
    assert!(
        query.contains("fieldManager=fleetgate-controller"),
        "{query}"
    );
    assert!(query.contains("force=true"), "{query}");
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = body_json(req).await;
    assert_eq!(body["kind"], kind);
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "fleetgate-controller"
    );
    let reply = if code == 200 {
        body
    } else {
        status(code, "Invalid")
    };
    send.send_response(respond(StatusCode::from_u16(code).unwrap(), &reply));
}

/// Expect a list by owner label of `path`; answer with objects named `names`.
async fn expect_list(api: &mut ApiHandle, path: &str, names: &[&str]) {
    let (req, send) = api.next_request().await.expect("list");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), path);
    let query = req
        .uri()
        .query()
        .unwrap_or_default()
        .replace("%3D", "=")
        .replace("%2F", "/");
    assert!(
        query.contains("labelSelector=app.kubernetes.io/managed-by=fleetgate-controller"),
        "{query}"
    );
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": n, "namespace": "default"}})
        })
        .collect();
    send.send_response(respond(
        StatusCode::OK,
        &json!({"apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
    ));
}

async fn expect_delete(api: &mut ApiHandle, path: &str) {
    let (req, send) = api.next_request().await.expect("delete");
    assert_eq!((req.method(), req.uri().path()), (&Method::DELETE, path));
    send.send_response(respond(StatusCode::OK, &status(200, "Success")));
}

const SVCS: &str = "/api/v1/namespaces/default/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const INGS: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";

#[tokio::test]
async fn objects_are_applied_then_what_the_generation_dropped_is_deleted() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        namespace(&mut api, "default", true).await;
        expect_apply(&mut api, &format!("{SVCS}/shop-hz-a"), "Service", 200).await;
        expect_apply(
            &mut api,
            &format!("{INGS}/shop-shop-hz-a-80"),
            "Ingress",
            200,
        )
        .await;
        // Routes first, Services last; what is still generated stays.
        expect_list(&mut api, INGS, &["shop-shop-hz-a-80", "old-shop-hz-c-80"]).await;
        expect_delete(&mut api, &format!("{INGS}/old-shop-hz-c-80")).await;
        expect_list(&mut api, SLICES, &["shop-hz-c-ipv4"]).await;
        expect_delete(&mut api, &format!("{SLICES}/shop-hz-c-ipv4")).await;
        expect_list(&mut api, SVCS, &["shop-hz-a", "shop-hz-c"]).await;
        expect_delete(&mut api, &format!("{SVCS}/shop-hz-c")).await;
        api
    });
    let report = apply(client, &objects(), &namespaces(&["default"]))
        .await
        .unwrap();
    let mut api = server.await.unwrap();
    assert_eq!(
        report,
        ApplyReport {
            applied: 2,
            deleted: vec![
                "Ingress default/old-shop-hz-c-80".to_string(),
                "EndpointSlice default/shop-hz-c-ipv4".to_string(),
                "Service default/shop-hz-c".to_string(),
            ],
            failed: vec![],
        }
    );
    assert!(api.next_request().await.is_none(), "no further calls");
}

#[tokio::test]
async fn a_missing_namespace_fails_before_anything_is_written() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        namespace(&mut api, "default", true).await;
        namespace(&mut api, "staging", false).await;
        api
    });
    let err = apply(client, &objects(), &namespaces(&["default", "staging"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApplyError::MissingNamespace(ns) if ns == "staging"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("nothing of the Higress wiring was applied"));
    let mut api = server.await.unwrap();
    assert!(
        api.next_request().await.is_none(),
        "no write after the check failed"
    );
}

#[tokio::test]
async fn an_object_the_api_refuses_fails_alone_and_is_not_collected() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        namespace(&mut api, "default", true).await;
        expect_apply(&mut api, &format!("{SVCS}/shop-hz-a"), "Service", 422).await;
        expect_apply(
            &mut api,
            &format!("{INGS}/shop-shop-hz-a-80"),
            "Ingress",
            200,
        )
        .await;
        expect_list(&mut api, INGS, &["shop-shop-hz-a-80"]).await;
        expect_list(&mut api, SLICES, &[]).await;
        // The refused Service is still generated: not deleted.
        expect_list(&mut api, SVCS, &["shop-hz-a"]).await;
        api
    });
    let report = apply(client, &objects(), &namespaces(&["default"]))
        .await
        .unwrap();
    let mut api = server.await.unwrap();
    assert_eq!(report.applied, 1);
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].starts_with("apply Service default/shop-hz-a"),
        "{report:?}"
    );
    assert!(api.next_request().await.is_none());
}

/// Play an API server that has every namespace and none of our objects (refusing the first
/// write when `refuse`); count the writes.
async fn accept_all(mut api: ApiHandle, refuse: bool) -> usize {
    let mut writes = 0;
    while let Some((req, send)) = api.next_request().await {
        let path = req.uri().path().to_string();
        let reply = match *req.method() {
            Method::PATCH if refuse && writes == 0 => {
                writes += 1;
                let invalid = respond(StatusCode::UNPROCESSABLE_ENTITY, &status(422, "Invalid"));
                send.send_response(invalid);
                continue;
            }
            Method::PATCH => {
                writes += 1;
                body_json(req).await
            }
            Method::GET
                if path.starts_with("/api/v1/namespaces/") && path.matches('/').count() == 4 =>
            {
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
            }
            Method::GET => json!({"apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList", "metadata": {}, "items": []}),
            ref m => panic!("unexpected {m} {path}"),
        };
        send.send_response(respond(StatusCode::OK, &reply));
    }
    writes
}

#[tokio::test]
async fn the_publisher_writes_a_generation_once_until_it_changes_fails_or_is_forced() {
    let options = DeriveOptions {
        upstream_template: HIGRESS_UPSTREAM_TEMPLATE.to_string(),
        ..DeriveOptions::default()
    };
    let args = fleet_fixture::two_members("active-active", options);
    let (derived, members) = cli::render_with_members(&args).unwrap();
    let opts = HigressOptions {
        namespaces: namespaces(&["default", "fleetgate-system"]),
        ..HigressOptions::default()
    };
    let mut publisher = Publisher::new(opts);
    let mut writes = Vec::new();
    // A refused object, then retried in full; then unchanged; then forced (a new leader).
    for (force, refuse) in [(false, true), (false, false), (false, false), (true, false)] {
        let (client, api) = mock_client();
        let server = tokio::spawn(accept_all(api, refuse));
        let result = publisher.step(client, &derived, &members, force).await;
        assert_eq!(result.is_err(), refuse, "{result:?}");
        writes.push(server.await.unwrap());
    }
    assert!(writes[0] >= 6, "Services, slices and Ingresses: {writes:?}");
    assert_eq!(
        writes[1], writes[0],
        "a partly refused generation is written again"
    );
    assert_eq!(writes[2], 0, "unchanged: nothing written");
    assert_eq!(writes[3], writes[0], "forced: all again");
}
