//! Shared by the mock-API tests: a kube client wired to `tower_test`'s mock service, whose
//! handle plays the API server.

use http::{Request, Response};
use kube::client::Body;
use tower_test::mock::{self, Handle};

pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (kube::Client, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

/// A request's JSON body.
#[allow(dead_code)]
pub async fn body_json(req: Request<Body>) -> serde_json::Value {
    let bytes = http_body_util::BodyExt::collect(req.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Wait (in tokio time, 5 ms steps, at most 10 s) until `f` holds.
#[allow(dead_code)]
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}
