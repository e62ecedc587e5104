//! Clusters and endpoints: a member's direct EDS cluster and its `ClusterLoadAssignment`, the
//! aggregate cluster the plugin names, and the DNS cluster Envoy fetches a remote `.wasm` from.
//! Timeouts and outlier detection keep the intent of `examples/envoy/envoy.yaml`.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::util::pack_any;

use super::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CustomClusterType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use super::pb::envoy::config::cluster::v3::{Cluster, OutlierDetection};
use super::pb::envoy::config::core::v3::{
    address, socket_address, Address, HealthStatus, Locality, SocketAddress,
};
use super::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use super::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use super::pb::google::protobuf::UInt32Value;
use super::resources::WasmCode;
use super::{ads, duration, XdsError};
use crate::derive::SvcRef;
use crate::endpoints::{Address as EpAddress, AddressType, EndpointView, MemberIndex};

/// The cluster Envoy fetches a remote `.wasm` through.
pub const WASM_SOURCE_CLUSTER: &str = "fleetgate-wasm-source";

/// A member's endpoints of one Service port, by EDS.
pub fn direct(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(duration(1)),
        lb_policy: LbPolicy::RoundRobin as i32,
        outlier_detection: Some(outlier_detection()),
        ..Cluster::default()
    }
}

/// Passive ejection: 5 consecutive 5xx, or 3 consecutive gateway failures (enforced: Envoy
/// only counts those by default), checked every second; any share of the hosts may be ejected
/// because the aggregate spills to the next member.
fn outlier_detection() -> OutlierDetection {
    let u32v = |value| Some(UInt32Value { value });
    OutlierDetection {
        consecutive_5xx: u32v(5),
        consecutive_gateway_failure: u32v(3),
        enforcing_consecutive_gateway_failure: u32v(100),
        interval: Some(duration(1)),
        base_ejection_time: Some(duration(10)),
        max_ejection_percent: u32v(100),
        ..OutlierDetection::default()
    }
}

/// The upstream the plugin names: `members` (direct clusters) in priority order.
pub fn aggregate(name: &str, members: &[String]) -> Cluster {
    let config = AggregateConfig {
        clusters: members.to_vec(),
    };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.aggregate".to_string(),
            typed_config: Some(pack_any(config)),
        })),
        connect_timeout: Some(duration(1)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..Cluster::default()
    }
}

/// The endpoints of `svc` in one member: ready ones HEALTHY, serving terminating ones
/// DRAINING (in-flight requests finish, no new ones), others left out; grouped by zone. A
/// dual-stack pod appears once (IPv4 slices are read first). FQDN slices and slices without a
/// port number are skipped: EDS needs IPs and ports.
pub fn load_assignment(name: &str, index: &MemberIndex, svc: &SvcRef) -> ClusterLoadAssignment {
    member_load_assignment(name, index, svc, None)
}

/// [`load_assignment`] for a member reached through its own gateway (a network that is not
/// flat): one endpoint, the gateway, weighted by the ready endpoints behind it; none when no
/// endpoint is ready (the aggregate then spills to the next member).
pub fn member_load_assignment(
    name: &str,
    index: &MemberIndex,
    svc: &SvcRef,
    gateway: Option<std::net::SocketAddr>,
) -> ClusterLoadAssignment {
    let direct = pod_load_assignment(name, index, svc);
    let Some(gw) = gateway else { return direct };
    let healthy = HealthStatus::Healthy as i32;
    let ready = direct
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter(|e| e.health_status == healthy)
        .count() as u32;
    let endpoints = (ready > 0).then(|| {
        let mut set = BTreeSet::new();
        set.insert((gw.ip().to_string(), gw.port(), healthy));
        let mut l = locality((None, set));
        l.lb_endpoints[0].load_balancing_weight = Some(UInt32Value { value: ready });
        l
    });
    ClusterLoadAssignment {
        endpoints: endpoints.into_iter().collect(),
        ..direct
    }
}

fn pod_load_assignment(name: &str, index: &MemberIndex, svc: &SvcRef) -> ClusterLoadAssignment {
    let mut zones: BTreeMap<Option<&str>, BTreeSet<(String, u16, i32)>> = BTreeMap::new();
    let key = svc.key();
    let port = index.service_port(&key, &svc.port);
    let slices = index
        .service(&key)
        .into_iter()
        .flat_map(|e| e.slices.iter().map(|(_, s)| s));
    let mut slices: Vec<_> = slices
        .filter(|s| s.address_type != AddressType::Fqdn)
        .collect();
    slices.sort_by_key(|s| s.address_type);
    let mut seen = BTreeSet::new();
    for slice in slices {
        let Some(Some(target)) = port.and_then(|p| slice.target_port(&p.name)) else {
            continue;
        };
        for ep in slice.endpoints.iter() {
            let (Some(health), EpAddress::Ip(ip)) = (health(ep), &ep.address) else {
                continue;
            };
            // A pod once (by its name's hash; without one, by address).
            if seen.insert(ep.pod.map_or_else(|| Err(*ip), Ok)) {
                let zone = zones.entry(ep.zone.as_deref()).or_default();
                zone.insert((ip.to_string(), target, health as i32));
            }
        }
    }
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: zones.into_iter().map(locality).collect(),
        ..ClusterLoadAssignment::default()
    }
}

fn health(ep: &EndpointView) -> Option<HealthStatus> {
    if ep.is_ready() {
        Some(HealthStatus::Healthy)
    } else if ep.serving && ep.terminating {
        Some(HealthStatus::Draining)
    } else {
        None
    }
}

fn locality((zone, eps): (Option<&str>, BTreeSet<(String, u16, i32)>)) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: zone.map(|z| Locality {
            zone: z.to_string(),
            ..Locality::default()
        }),
        lb_endpoints: eps
            .into_iter()
            .map(|(addr, port, health)| LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(&addr, port)),
                    ..Endpoint::default()
                })),
                health_status: health,
                ..LbEndpoint::default()
            })
            .collect(),
        ..LocalityLbEndpoints::default()
    }
}

/// A TCP socket address.
pub fn socket(addr: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        })),
    }
}

/// The DNS cluster of a remote `.wasm`'s host (`None` for a local file).
pub fn wasm_source(code: &WasmCode) -> Result<Option<Cluster>, XdsError> {
    let WasmCode::Remote { uri, .. } = code else {
        return Ok(None);
    };
    let bad = |reason: &str| XdsError::WasmUri {
        uri: uri.clone(),
        reason: reason.to_string(),
    };
    let parsed: http::Uri = uri.parse().map_err(|_| bad("not a URI"))?;
    if parsed.scheme_str() != Some("http") {
        return Err(bad(
            "only http:// is supported (the sha256 guards integrity)",
        ));
    }
    let host = parsed.host().ok_or_else(|| bad("no host"))?;
    let port = parsed.port_u16().unwrap_or(80);
    Ok(Some(Cluster {
        name: WASM_SOURCE_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        connect_timeout: Some(duration(2)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: WASM_SOURCE_CLUSTER.to_string(),
            endpoints: vec![locality((
                None,
                BTreeSet::from([(host.to_string(), port, 0)]),
            ))],
            ..ClusterLoadAssignment::default()
        }),
        ..Cluster::default()
    }))
}
