//! The synthetic fleet of the scale benchmarks (`benches/derive.rs`, `tests/xds_bench.rs`):
//! app `i` is Ingress `ns{i % 50}/app{i}` (host `app{i}.example.com`) to Service port 80 of a
//! two-port Service (`http: 80 -> 8080`, `metrics: 9090 -> metrics`).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

pub fn ingress(i: usize) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": format!("app{i}"), "namespace": format!("ns{}", i % 50),
                     "uid": format!("u{i}"), "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "fleetgate", "rules": [{"host": format!("app{i}.example.com"),
            "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": format!("app{i}"), "port": {"number": 80}}}}]}}]}
    }))
    .expect("ingress")
}

pub fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("app{i}"), "namespace": format!("ns{}", i % 50)},
        "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]}
    }))
    .expect("service")
}
