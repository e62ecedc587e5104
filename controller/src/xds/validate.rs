//! Cross-reference checks over one snapshot's resources, run before anything is sent: what
//! Envoy would only find out as a 404 (`NR`), a cluster stuck warming or a listener that never
//! becomes active. The typed protos already rule out unknown fields.

use std::collections::BTreeSet;

use fleetgate_plugin::config::{BackendV1, ConfigV1};
use prost::Message;

use super::listener::WASM_TYPE_URL;
use super::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use super::pb::envoy::config::cluster::v3::Cluster;
use super::pb::envoy::config::listener::v3::filter;
use super::pb::envoy::config::route::v3::route::Action;
use super::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use super::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use super::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use super::resources::Resources;
use super::XdsError;

/// At most this many problems are listed (a broken template breaks every cluster).
const MAX_LISTED: usize = 20;

/// Check that every name one resource gives another resolves, and that the routes read the
/// headers the plugin writes.
pub fn validate(r: &Resources, plugin: &ConfigV1) -> Result<(), XdsError> {
    let mut errors = Vec::new();
    let clusters: BTreeSet<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    if clusters.len() != r.clusters.len() {
        errors.push("duplicate cluster names".to_string());
    }
    check_clusters(r, &clusters, &mut errors);
    for upstream in plugin_upstreams(plugin) {
        if !clusters.contains(upstream) {
            errors.push(format!("plugin upstream {upstream:?} is not a cluster"));
        }
    }
    check_listeners(r, plugin, &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    let more = errors.len().saturating_sub(MAX_LISTED);
    errors.truncate(MAX_LISTED);
    if more > 0 {
        errors.push(format!("and {more} more"));
    }
    Err(XdsError::Invalid(errors))
}

/// Aggregates name existing, non-aggregate clusters; each EDS cluster has exactly its
/// endpoints.
fn check_clusters(r: &Resources, clusters: &BTreeSet<&str>, errors: &mut Vec<String>) {
    let assignments: BTreeSet<&str> = r
        .endpoints
        .iter()
        .map(|e| e.cluster_name.as_str())
        .collect();
    let mut eds = BTreeSet::new();
    for c in &r.clusters {
        if is_eds(c) {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.as_str());
            let service = service.filter(|s| !s.is_empty()).unwrap_or(&c.name);
            if !assignments.contains(service) {
                errors.push(format!(
                    "EDS cluster {:?} has no endpoints resource",
                    c.name
                ));
            }
            eds.insert(service);
        }
        for member in aggregate_members(c) {
            if !clusters.contains(member.as_str()) || member == c.name {
                errors.push(format!(
                    "aggregate {:?} names unknown cluster {member:?}",
                    c.name
                ));
            }
        }
    }
    for a in assignments.difference(&eds) {
        errors.push(format!("endpoints {a:?} belong to no EDS cluster"));
    }
}

fn is_eds(c: &Cluster) -> bool {
    c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
}

/// The clusters an aggregate cluster lists (none for other clusters).
pub fn aggregate_members(c: &Cluster) -> Vec<String> {
    let Some(ClusterDiscoveryType::ClusterType(custom)) = &c.cluster_discovery_type else {
        return Vec::new();
    };
    custom
        .typed_config
        .as_ref()
        .and_then(|a| AggregateConfig::decode(a.value.as_slice()).ok())
        .map(|a| a.clusters)
        .unwrap_or_default()
}

/// Every upstream a request can be sent to (mirrors are best effort and not listed).
pub fn plugin_upstreams(c: &ConfigV1) -> impl Iterator<Item = &str> {
    c.routes.iter().flat_map(|r| {
        let canaries = r.canaries.iter().flat_map(|c| &c.backends);
        let fallback = r.fallback.iter().flat_map(|f| &f.backends);
        r.backends
            .iter()
            .chain(canaries)
            .chain(fallback)
            .map(|b: &BackendV1| b.upstream.as_str())
    })
}

/// Each listener's HCM names a served route configuration and plugin, and every route reads
/// the plugin's headers.
fn check_listeners(r: &Resources, plugin: &ConfigV1, errors: &mut Vec<String>) {
    let routes: BTreeSet<&str> = r.routes.iter().map(|x| x.name.as_str()).collect();
    let extensions: BTreeSet<&str> = r.extensions.iter().map(|x| x.name.as_str()).collect();
    for hcm in r.listeners.iter().flat_map(http_connection_managers) {
        match &hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) if routes.contains(rds.route_config_name.as_str()) => {}
            _ => errors.push(format!(
                "listener {:?}: no served route configuration",
                hcm.stat_prefix
            )),
        }
        for f in &hcm.http_filters {
            if let Some(http_filter::ConfigType::ConfigDiscovery(d)) = &f.config_type {
                if !extensions.contains(f.name.as_str()) || d.type_urls != [WASM_TYPE_URL] {
                    errors.push(format!(
                        "http filter {:?}: no served extension config",
                        f.name
                    ));
                }
            }
        }
    }
    for (route, action) in r.routes.iter().flat_map(|rc| {
        let routes = rc.virtual_hosts.iter().flat_map(|vh| &vh.routes);
        routes.filter_map(|rt| match &rt.action {
            Some(Action::Route(a)) => Some((rt.name.as_str(), a)),
            _ => None,
        })
    }) {
        let header = match &action.cluster_specifier {
            Some(ClusterSpecifier::ClusterHeader(h)) => h.as_str(),
            _ => "",
        };
        if header != plugin.cluster_header {
            errors.push(format!(
                "route {route:?} reads cluster header {header:?}, the plugin sets {:?}",
                plugin.cluster_header
            ));
        }
        if action
            .request_mirror_policies
            .iter()
            .any(|m| m.cluster_header != plugin.mirror_header)
        {
            errors.push(format!(
                "route {route:?} mirrors by another header than the plugin's"
            ));
        }
    }
}

/// The HTTP connection managers of a listener's filter chains.
pub fn http_connection_managers(
    l: &super::pb::envoy::config::listener::v3::Listener,
) -> Vec<HttpConnectionManager> {
    l.filter_chains
        .iter()
        .flat_map(|fc| &fc.filters)
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice()).ok()
            }
            _ => None,
        })
        .collect()
}
