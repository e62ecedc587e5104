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
