//! The pure translation against the resources the controller really emits (its own builders),
//! and the clear errors for what the local gateway does not do.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use fleetgate_controller::xds::{clusters, listener, WasmCode};
use fleetgate_local_gateway::xds::translate::{self, ClusterKind, CodeSource};

fn assert_error<T: std::fmt::Debug>(result: Result<T, String>, says: &str) {
    let error = result.unwrap_err();
    assert!(error.contains(says), "{error:?} should say {says:?}");
}

#[test]
fn the_emitted_route_config_becomes_per_method_retry_rules() {
    let table = translate::route_table(&listener::route_config("X-Up", "x-mirror")).unwrap();
    assert_eq!(table.cluster_header, "x-up");
    assert_eq!(table.mirror_header.as_deref(), Some("x-mirror"));
    let get = table.rule("GET").unwrap();
    assert_eq!(get.name, "idempotent");
    assert_eq!(get.retry.num_retries, listener::RETRIES);
    assert_eq!(get.retry.per_try_timeout, Duration::from_secs(5));
    assert!(get.retry.retry_idempotent_on_errors);
    let post = table.rule("POST").unwrap();
    assert_eq!(post.name, "other-methods");
    assert!(!post.retry.retry_idempotent_on_errors);
}

#[test]
fn a_route_naming_a_fixed_cluster_is_refused() {
    let mut rc = listener::route_config("x-up", "x-mirror");
    let route = &mut rc.virtual_hosts[0].routes[0];
    if let Some(Action::Route(action)) = &mut route.action {
        action.cluster_specifier = Some(ClusterSpecifier::Cluster("c".into()));
    }
    assert_error(
        translate::route_table(&rc),
        "route \"idempotent\": no cluster_header",
    );
}

#[test]
fn the_emitted_listener_names_its_routes_and_plugin() {
    let l = listener::listener("127.0.0.1:8080".parse().unwrap());
    let spec = translate::listener(&l).unwrap();
    assert_eq!(spec.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(spec.route_config, listener::ROUTE_NAME);
    assert_eq!(spec.plugin, listener::PLUGIN_NAME);
}

#[test]
fn emitted_clusters_translate_and_other_types_are_refused() {
    let direct = translate::cluster(&clusters::direct("d")).unwrap();
    assert_eq!(
        direct.kind,
        ClusterKind::Eds {
            service_name: "d".into()
        }
    );
    let agg = translate::cluster(&clusters::aggregate("a", &["d".into(), "e".into()])).unwrap();
    assert_eq!(
        agg.kind,
        ClusterKind::Aggregate(vec!["d".into(), "e".into()])
    );
    let remote = WasmCode::Remote {
        uri: "http://127.0.0.1:9/p.wasm".into(),
        sha256: "ab".into(),
    };
    let source = clusters::wasm_source(&remote).unwrap().unwrap();
    let fixed = translate::cluster(&source).unwrap();
    assert_eq!(
        fixed.kind,
        ClusterKind::Fixed(vec![("127.0.0.1".into(), 9)])
    );

    let mut odd = clusters::direct("o");
    odd.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
        DiscoveryType::OriginalDst as i32,
    ));
    assert_error(
        translate::cluster(&odd),
        "cluster \"o\": discovery type ORIGINAL_DST is not supported",
    );
}

fn endpoint(ip: &str, port: u16, health: HealthStatus) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(clusters::socket(ip, port)),
            ..Endpoint::default()
        })),
        health_status: health as i32,
        ..LbEndpoint::default()
    }
}

#[test]
fn only_healthy_and_unknown_endpoints_take_new_requests() {
    let cla = ClusterLoadAssignment {
        cluster_name: "d".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![
                endpoint("10.0.0.1", 80, HealthStatus::Healthy),
                endpoint("10.0.0.2", 80, HealthStatus::Draining),
                endpoint("10.0.0.3", 80, HealthStatus::Unhealthy),
                endpoint("10.0.0.4", 80, HealthStatus::Unknown),
            ],
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    };
    let got = translate::usable_endpoints(&cla).unwrap();
    let want: Vec<std::net::SocketAddr> = vec![
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.4:80".parse().unwrap(),
    ];
    assert_eq!(got, want);

    let mut named = cla.clone();
    named.endpoints[0].lb_endpoints = vec![endpoint("shop.local", 80, HealthStatus::Healthy)];
    assert_error(
        translate::usable_endpoints(&named),
        "\"shop.local\" is not an IP address",
    );
}

#[test]
fn the_emitted_plugin_carries_its_config_and_code() {
    let file = listener::plugin("{\"version\":1}", &WasmCode::File("/p.wasm".into()));
    let source = translate::plugin(&file).unwrap();
    assert_eq!(source.config, "{\"version\":1}");
    assert_eq!(source.code, CodeSource::File("/p.wasm".into()));
    let remote = WasmCode::Remote {
        uri: "http://h:8/p.wasm".into(),
        sha256: "AB12".into(),
    };
    let source = translate::plugin(&listener::plugin("{}", &remote)).unwrap();
    assert_eq!(
        source.code,
        CodeSource::Remote {
            uri: "http://h:8/p.wasm".into(),
            cluster: clusters::WASM_SOURCE_CLUSTER.into(),
            sha256: "ab12".into(),
            timeout: Duration::from_secs(10),
        }
    );
}
