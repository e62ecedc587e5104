//! The xDS resources built from the `examples/fleet/` fixtures: each checked strictly against
//! Envoy's descriptors, and consistent with the plugin config derived from the same snapshot.

mod xds_common;

use fleetgate_controller::xds::pb::envoy::config::cluster::v3::Cluster;
use fleetgate_controller::xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use fleetgate_controller::xds::pb::google::protobuf::Any;
use fleetgate_controller::xds::validate::{aggregate_members, plugin_upstreams};
use fleetgate_controller::xds::{self, Snapshot, WasmCode, XdsError};
use serde_json::Value;
use xds_common::*;

const SCENARIOS: &[&str] = &[
    "active-active",
    "active-standby",
    "header-to-cluster",
    "canary-by-header",
    "canary-by-weight",
    "mirror",
    "multi-port",
];

fn cluster<'a>(r: &'a xds::Resources, name: &str) -> &'a Cluster {
    r.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn endpoints<'a>(r: &'a xds::Resources, name: &str) -> &'a ClusterLoadAssignment {
    r.endpoints
        .iter()
        .find(|c| c.cluster_name == name)
        .unwrap_or_else(|| panic!("no endpoints {name}"))
}

/// `(address:port, health, zone)` of a load assignment, via its strict JSON.
fn hosts(cla: &ClusterLoadAssignment) -> Vec<(String, String, String)> {
    let json = check_strict(cla).unwrap();
    let mut out = Vec::new();
    for loc in json["endpoints"].as_array().into_iter().flatten() {
        let zone = loc["locality"]["zone"].as_str().unwrap_or("").to_string();
        for ep in loc["lbEndpoints"].as_array().into_iter().flatten() {
            let sa = &ep["endpoint"]["address"]["socketAddress"];
            let addr = format!("{}:{}", sa["address"].as_str().unwrap(), sa["portValue"]);
            let health = ep["healthStatus"].as_str().unwrap_or("UNKNOWN").to_string();
            out.push((addr, health, zone.clone()));
        }
    }
    out
}

#[test]
fn every_resource_of_every_type_passes_the_strict_envoy_check() {
    let remote = WasmCode::Remote {
        uri: "http://fleetgate-controller.fleetgate-system:8080/v1/plugin.wasm".into(),
        sha256: "ab".repeat(32),
    };
    for scenario in SCENARIOS {
        let (d, members) = fixture(scenario, "hz-a", "hz-b");
        for wasm in [file_wasm(), remote.clone()] {
            let r = xds::build(&d, &members, &options(wasm)).unwrap();
            let mut checked = 0;
            for c in &r.clusters {
                check_strict(c).unwrap_or_else(|e| panic!("{scenario}: {e}"));
                checked += 1;
            }
            for x in &r.endpoints {
                check_strict(x).unwrap_or_else(|e| panic!("{scenario}: {e}"));
            }
            for x in &r.listeners {
                check_strict(x).unwrap_or_else(|e| panic!("{scenario}: {e}"));
            }
            for x in &r.routes {
                check_strict(x).unwrap_or_else(|e| panic!("{scenario}: {e}"));
            }
            for x in &r.extensions {
                check_strict(x).unwrap_or_else(|e| panic!("{scenario}: {e}"));
            }
            assert!(
                checked >= 4 && !r.endpoints.is_empty(),
                "{scenario}: too few"
            );
            assert_eq!(
                (r.listeners.len(), r.routes.len(), r.extensions.len()),
                (1, 1, 1)
            );
        }
    }
}

#[test]
fn the_strict_check_rejects_unknown_types_and_unknown_fields() {
    let (_, r) = resources("active-active");
    let mut bad_type = r.clusters[0].clone();
    bad_type.typed_extension_protocol_options.insert(
        "x".into(),
        Any {
            type_url: "type.googleapis.com/envoy.nope.v3.Nothing".into(),
            value: vec![],
        },
    );
    assert!(check_strict(&bad_type).is_err());
    // Field 9999 exists in no Envoy message: appended to a cluster, it is an unknown field.
    let mut bytes = prost::Message::encode_to_vec(&r.clusters[0]);
    bytes.extend_from_slice(&[0xf8, 0xe0, 0x04, 0x01]); // tag 9999, varint 1
    let err = check_bytes("envoy.config.cluster.v3.Cluster", &bytes).unwrap_err();
    assert!(err.contains("unknown fields"), "{err}");
}

#[test]
fn every_plugin_upstream_is_a_cluster_and_every_direct_cluster_has_its_endpoints() {
    for scenario in SCENARIOS {
        let (d, r) = resources(scenario);
        let names: Vec<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut upstreams = 0;
        for u in plugin_upstreams(d.config()) {
            assert!(names.contains(&u), "{scenario}: {u} is not a cluster");
            let members = aggregate_members(cluster(&r, u));
            assert!(!members.is_empty(), "{scenario}: {u} is not an aggregate");
            for m in &members {
                assert!(m.starts_with("direct|"), "{scenario}: {m}");
                endpoints(&r, m);
            }
            upstreams += 1;
        }
        assert!(upstreams >= 2, "{scenario}");
        let eds = r.clusters.iter().filter(|c| c.name.starts_with("direct|"));
        assert_eq!(eds.count(), r.endpoints.len(), "{scenario}");
        let json = check_strict(&r.routes[0]).unwrap();
        for route in json["virtualHosts"][0]["routes"].as_array().unwrap() {
            assert_eq!(
                route["route"]["clusterHeader"],
                d.config().cluster_header.as_str()
            );
            let mirror = &route["route"]["requestMirrorPolicies"][0]["clusterHeader"];
            assert_eq!(mirror, d.config().mirror_header.as_str());
        }
    }
}

#[test]
fn aggregates_list_their_member_first_then_the_others_in_the_route_order() {
    let (_, r) = resources("active-standby"); // order hz-a, hz-b
    let direct = |m: &str| format!("direct|80|{m}|shop.default.svc.cluster.local");
    let agg = |m: &str| format!("outbound|80|{m}|shop.default.svc.cluster.local");
    assert_eq!(
        aggregate_members(cluster(&r, &agg("hz-a"))),
        [direct("hz-a"), direct("hz-b")]
    );
    assert_eq!(
        aggregate_members(cluster(&r, &agg("hz-b"))),
        [direct("hz-b"), direct("hz-a")]
    );
    let json = check_strict(cluster(&r, &direct("hz-a"))).unwrap();
    assert_eq!(json["type"], "EDS");
    assert_eq!(json["connectTimeout"], "1s");
    assert_eq!(json["outlierDetection"]["consecutiveGatewayFailure"], 3);
    assert_eq!(json["outlierDetection"]["maxEjectionPercent"], 100);
}

#[test]
fn direct_endpoints_are_pod_ips_on_the_target_port_with_zone_and_health() {
    let (_, r) = resources("active-active");
    let b = hosts(endpoints(
        &r,
        "direct|80|hz-b|shop.default.svc.cluster.local",
    ));
    // 10.2.0.30 is not ready and not serving: left out.
    let want_b: Vec<(String, String, String)> = ["10.2.0.11:8080", "10.2.0.27:8080"]
        .iter()
        .map(|a| (a.to_string(), "HEALTHY".into(), "cn-hangzhou-k".into()))
        .collect();
    assert_eq!(b, want_b);
    let a = hosts(endpoints(
        &r,
        "direct|80|hz-a|shop.default.svc.cluster.local",
    ));
    let draining: Vec<_> = a.iter().filter(|h| h.1 == "DRAINING").collect();
    assert_eq!(draining.len(), 1, "{a:?}");
    assert_eq!(draining[0].0, "10.1.0.19:8080");
    assert!(a.iter().all(|h| h.2 == "cn-hangzhou-h"), "{a:?}");
}

#[test]
fn a_named_service_port_resolves_to_its_own_target_port() {
    let (_, r) = resources("multi-port");
    let metrics = hosts(endpoints(
        &r,
        "direct|9090|hz-b|shop.default.svc.cluster.local",
    ));
    assert!(!metrics.is_empty());
    assert!(
        metrics.iter().all(|h| h.0.ends_with(":9102")),
        "{metrics:?}"
    );
}

#[test]
fn dual_stack_pods_appear_once() {
    let (d, members) = fixture("active-active", "hz-a-dual-stack", "hz-b");
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    let a = hosts(endpoints(
        &r,
        "direct|80|hz-a|shop.default.svc.cluster.local",
    ));
    let (single, _) = fixture("active-active", "hz-a", "hz-b");
    let single_count = single.config().routes[0].backends[0].ready.unwrap();
    let healthy = a.iter().filter(|h| h.1 == "HEALTHY").count() as u32;
    assert_eq!(healthy, single_count, "{a:?}");
    assert!(
        a.iter().all(|h| !h.0.starts_with('[')),
        "IPv4 preferred: {a:?}"
    );
}

#[test]
fn the_mirror_upstream_spans_every_member_that_may_have_the_service() {
    let (d, r) = resources("mirror");
    let upstream = &d.config().routes[0].mirror.as_ref().unwrap().upstream;
    let members = aggregate_members(cluster(&r, upstream));
    assert_eq!(
        members,
        [
            "direct|8080|hz-a|shop-shadow.default.svc.cluster.local",
            "direct|8080|hz-b|shop-shadow.default.svc.cluster.local"
        ]
    );
    assert!(r.unresolved_mirrors.is_empty());
    assert!(
        hosts(endpoints(&r, &members[1])).is_empty(),
        "hz-b has no shop-shadow"
    );
}

#[test]
fn the_plugin_arrives_by_ecds_with_the_derived_config() {
    let (d, r) = resources("canary-by-header");
    let listener = check_strict(&r.listeners[0]).unwrap();
    let hcm = &listener["filterChains"][0]["filters"][0]["typedConfig"];
    assert_eq!(hcm["rds"]["routeConfigName"], r.routes[0].name.as_str());
    let wasm = &hcm["httpFilters"][0];
    assert_eq!(wasm["name"], r.extensions[0].name.as_str());
    assert_eq!(
        wasm["configDiscovery"]["typeUrls"][0],
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let ext = check_strict(&r.extensions[0]).unwrap();
    let config = &ext["typedConfig"]["config"];
    assert_eq!(
        config["configuration"]["value"],
        std::str::from_utf8(&d.json).unwrap()
    );
    assert_eq!(
        config["vmConfig"]["code"]["local"]["filename"],
        "/etc/envoy/fleetgate_plugin.wasm"
    );
    assert_eq!(config["failurePolicy"], "FAIL_RELOAD");
}

#[test]
fn a_remote_wasm_is_fetched_through_its_own_cluster_with_its_sha256() {
    let (d, members) = fixture("active-active", "hz-a", "hz-b");
    let wasm = WasmCode::Remote {
        uri: "http://ctl.example:8080/v1/plugin.wasm".into(),
        sha256: "cd".repeat(32),
    };
    let r = xds::build(&d, &members, &options(wasm)).unwrap();
    let ext = check_strict(&r.extensions[0]).unwrap();
    let remote = &ext["typedConfig"]["config"]["vmConfig"]["code"]["remote"];
    assert_eq!(remote["sha256"], "cd".repeat(32));
    let source = check_strict(cluster(&r, remote["httpUri"]["cluster"].as_str().unwrap())).unwrap();
    let sa = &source["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
        ["socketAddress"];
    assert_eq!(
        (sa["address"].clone(), sa["portValue"].clone()),
        (Value::from("ctl.example"), Value::from(8080))
    );
    let https = WasmCode::Remote {
        uri: "https://ctl.example/x.wasm".into(),
        sha256: "cd".repeat(32),
    };
    assert!(matches!(
        xds::build(&d, &members, &options(https)),
        Err(XdsError::WasmUri { .. })
    ));
}

#[test]
fn resources_that_miss_a_plugin_upstream_are_refused() {
    let (d, members) = fixture("active-active", "hz-a", "hz-b");
    let mut opts = options(file_wasm());
    opts.upstream_template = "other|{port}|{cluster}|{service}.{namespace}".into();
    match xds::build(&d, &members, &opts) {
        Err(XdsError::Invalid(errors)) => {
            assert!(
                errors.iter().any(|e| e.contains("outbound|80|hz-a|shop")),
                "{errors:?}"
            )
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn scaling_a_member_to_zero_changes_only_the_endpoint_version() {
    let (d1, m1) = fixture("active-active", "hz-a", "hz-b");
    let (d2, m2) = fixture("active-active", "hz-a", "hz-b-scaled-to-zero");
    let opts = options(file_wasm());
    let s1 = Snapshot::new(&xds::build(&d1, &m1, &opts).unwrap());
    let s2 = Snapshot::new(&xds::build(&d2, &m2, &opts).unwrap());
    let version = |s: &Snapshot, t| s.get(t).unwrap().version.clone();
    assert_ne!(version(&s1, xds::ENDPOINT), version(&s2, xds::ENDPOINT));
    assert_eq!(version(&s1, xds::CLUSTER), version(&s2, xds::CLUSTER));
    assert_eq!(version(&s1, xds::LISTENER), version(&s2, xds::LISTENER));
    assert_eq!(version(&s1, xds::ROUTE), version(&s2, xds::ROUTE));
    // The plugin config carries ready counts: it changes with the endpoints.
    assert_ne!(d1.json, d2.json);
    let again = Snapshot::new(&xds::build(&d1, &m1, &opts).unwrap());
    assert_eq!(s1, again, "the same input gives the same versions");
}

#[test]
fn an_incremental_endpoint_update_equals_a_full_rebuild() {
    let (d, mut members) = fixture("active-active", "hz-a", "hz-b");
    let opts = options(file_wasm());
    let before = xds::build(&d, &members, &opts).unwrap();
    let snapshot = Snapshot::new(&before);
    let hz_b = replace_hz_b_pod(&mut members);
    let key = ("default".to_string(), "shop".to_string());
    let changed = xds::endpoint_entries(&before.direct, hz_b, &[key]);
    assert_eq!(changed.len(), 1, "one Service port of one member");
    let incremental = snapshot.with(xds::ENDPOINT, changed);
    let full = Snapshot::new(&xds::build(&d, &members, &opts).unwrap());
    assert_eq!(incremental, full);
    assert_ne!(
        incremental.get(xds::ENDPOINT).unwrap().version,
        snapshot.get(xds::ENDPOINT).unwrap().version
    );
}

#[test]
fn a_member_with_ten_thousand_endpoints_gets_them_all() {
    let (d, mut members) = fixture("active-active", "hz-a", "hz-b");
    let hz_b = members.iter_mut().find(|m| m.id == "hz-b").unwrap();
    let mut index = (*hz_b.index).clone();
    for s in 0..10 {
        let endpoints: Vec<Value> = (0..1000)
            .map(|i| {
                // Valid IPv4 addresses (an endpoint address that is no IP never reaches EDS).
                let ip = format!("10.3.{}.{}", s * 4 + i / 250, i % 250 + 1);
                serde_json::json!({"addresses": [ip],
                    "conditions": {"ready": true}, "zone": "cn-hangzhou-k",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("big-{s}-{i}")}})
            })
            .collect();
        let slice = serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("shop-big-{s}"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "shop"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints
        }))
        .unwrap();
        index.apply_slice(&slice);
    }
    hz_b.index = std::sync::Arc::new(index);
    let started = std::time::Instant::now();
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    let snapshot = Snapshot::new(&r);
    let took = started.elapsed();
    let cla = endpoints(&r, "direct|80|hz-b|shop.default.svc.cluster.local");
    let n: usize = cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
    assert_eq!(
        n,
        10_000 + 2,
        "10,000 new and the 2 ready pods of the fixture"
    );
    check_strict(cla).unwrap();
    assert!(snapshot.encoded_bytes() > 10_000 * 20);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

#[test]
fn aggregates_list_at_most_the_failover_members() {
    let (d, members) = fixture("active-standby", "hz-a", "hz-b");
    let mut opts = options(file_wasm());
    assert_eq!(opts.failover_members, 3, "1 + the route's 2 retries");
    opts.failover_members = 1;
    let r = xds::build(&d, &members, &opts).unwrap();
    let agg = cluster(&r, "outbound|80|hz-b|shop.default.svc.cluster.local");
    assert_eq!(
        aggregate_members(agg),
        ["direct|80|hz-b|shop.default.svc.cluster.local"]
    );
    // The other member's direct cluster still exists: its own aggregate starts with it.
    cluster(&r, "direct|80|hz-a|shop.default.svc.cluster.local");
}

#[test]
fn a_member_behind_its_own_gateway_gets_one_endpoint_weighted_by_its_ready_pods() {
    let gw: std::net::SocketAddr = "47.96.10.22:443".parse().unwrap();
    let opts = options(file_wasm());
    let build = |hz_b: &str| {
        let (d, mut members) = fixture("active-active", "hz-a", hz_b);
        members.iter_mut().find(|m| m.id == "hz-b").unwrap().gateway = Some(gw);
        xds::build(&d, &members, &opts).unwrap()
    };
    let r = build("hz-b");
    let b = endpoints(&r, "direct|80|hz-b|shop.default.svc.cluster.local");
    let lb: Vec<_> = b.endpoints.iter().flat_map(|l| &l.lb_endpoints).collect();
    assert_eq!(lb.len(), 1, "{b:?}");
    // hz-b has two ready pods (a third is neither ready nor serving).
    assert_eq!(
        lb[0].load_balancing_weight.as_ref().map(|w| w.value),
        Some(2)
    );
    assert_eq!(hosts(b)[0].0, gw.to_string());
    // hz-a (flat network) still gets its pod IPs.
    let a = hosts(endpoints(
        &r,
        "direct|80|hz-a|shop.default.svc.cluster.local",
    ));
    assert!(
        a.len() > 1 && a.iter().all(|h| h.0.starts_with("10.1.")),
        "{a:?}"
    );
    // No ready pod behind the gateway: no endpoint, so the aggregate spills to the next member.
    let r = build("hz-b-scaled-to-zero");
    let b = endpoints(&r, "direct|80|hz-b|shop.default.svc.cluster.local");
    assert!(b.endpoints.is_empty(), "{b:?}");
}
