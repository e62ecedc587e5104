//! The synthetic fleet of the scale benchmarks (`benches/derive.rs`, `benches/xds.rs`) and of
//! the bounded xDS scale test: app `i` is Ingress `ns{i % 50}/app{i}` (host
//! `app{i}.example.com`) to Service port 80 of a two-port Service (`http: 80 -> 8080`,
//! `metrics: 9090 -> metrics`); each member has one EndpointSlice of 3 endpoints per app.
#![allow(dead_code)]

use std::sync::Arc;

use fleetgate_controller::derive::{Contact, MemberSnapshot};
use fleetgate_controller::endpoints::{MemberIndex, Relist};
use fleetgate_controller::gateway_api::{Objects, CONTROLLER_NAME};
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

/// Endpoints per app and member.
pub const REPLICAS: usize = 3;

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

/// App `i` as an HTTPRoute (`ns{i % 50}/app{i}`, host `app{i}.example.com`) attached to
/// [`gateway_api`]'s Gateway; `version` is its resourceVersion.
pub fn http_route(i: usize, version: usize) -> HttpRoute {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": format!("app{i}"), "namespace": format!("ns{}", i % 50),
                     "uid": format!("u{i}"), "resourceVersion": version.to_string(),
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"parentRefs": [{"name": "fleet", "namespace": "fleet"}],
            "hostnames": [format!("app{i}.example.com")],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": format!("app{i}"), "port": 80}]}]}
    }))
    .expect("httproute")
}

/// A GatewayClass of fleetgate's and Gateway `fleet/fleet`, taking routes from every namespace.
pub fn gateway_api(routes: Vec<HttpRoute>) -> Objects {
    let class = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "fleetgate"}, "spec": {"controllerName": CONTROLLER_NAME}});
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "fleet", "namespace": "fleet"},
        "spec": {"gatewayClassName": "fleetgate", "listeners": [{"name": "http", "port": 80,
            "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}});
    Objects {
        classes: vec![serde_json::from_value(class).expect("class")],
        gateways: vec![serde_json::from_value(gateway).expect("gateway")],
        http_routes: routes,
        ..Objects::default()
    }
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

/// How an app's slice looks in one member.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The first `ready` endpoints are ready.
    pub ready: usize,
    /// Moves the first pod (a pod replaced in place: new name and address, same ready count).
    pub generation: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            ready: REPLICAS,
            generation: 0,
        }
    }
}

/// The EndpointSlice of app `i` in member `m` (zone `zone-{m % 3}`).
pub fn slice(i: usize, m: usize, shape: Shape) -> EndpointSlice {
    let ns = format!("ns{}", i % 50);
    let endpoints: Vec<_> = (0..REPLICAS)
        .map(|j| {
            let moved = if j == 0 { shape.generation } else { 0 };
            // A moved pod's address differs from every earlier one for 62,500 moves (the
            // third octet carries the moves past 250).
            let third = (i / 250 + j * 40 + moved / 250) % 250;
            let ip = format!("10.{m}.{third}.{}", (i + moved) % 250);
            json!({"addresses": [ip], "conditions": {"ready": j < shape.ready},
                   "zone": format!("zone-{}", m % 3),
                   "targetRef": {"kind": "Pod", "namespace": ns,
                                 "name": format!("app{i}-{j}-{moved}")}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("app{i}-x"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": format!("app{i}")}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "metrics", "port": 9102, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

/// `count` members with apps `0..n`, as their watches fill them: each relist reduces its
/// objects one by one.
pub fn members(n: usize, count: usize) -> Vec<MemberSnapshot> {
    (0..count)
        .map(|m| {
            let (mut services, mut slices) = (Relist::default(), Relist::default());
            for i in 0..n {
                services.add_service(&service(i));
                slices.add_slice(&slice(i, m, Shape::default()));
            }
            let mut index = MemberIndex::default();
            index.replace_services(services);
            index.replace_slices(slices);
            MemberSnapshot {
                id: format!("member-{m:02}"),
                zone: Some(format!("zone-{}", m % 3)),
                contact: Contact::Live,
                index: Arc::new(index),
                gateway: None,
            }
        })
        .collect()
}

/// A `/proc/self/status` memory field (`VmRSS:`, `VmHWM:`), in MiB (the benchmarks' figures).
pub fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
