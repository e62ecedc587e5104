//! Cross-reference checks over one snapshot's resources, run before anything is sent: what
//! Envoy would only find out as a 404 (`NR`), a cluster stuck warming or a listener that never
//! becomes active. The typed protos already rule out unknown fields.

use std::sync::Arc;

use foldhash::HashSet;

use fleetgate_plugin::config::{BackendV1, ConfigV1};
use prost::Message;
use rayon::prelude::*;

use super::listener::WASM_TYPE_URL;
use super::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use super::pb::envoy::config::cluster::v3::Cluster;
use super::pb::envoy::config::core::v3::TypedExtensionConfig;
use super::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use super::pb::envoy::config::listener::v3::filter;
use super::pb::envoy::config::listener::v3::Listener;
use super::pb::envoy::config::route::v3::route::Action;
use super::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use super::pb::envoy::config::route::v3::RouteConfiguration;
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
    let mut c = Checker::default();
    for x in &r.clusters {
        let name = Arc::from(x.name.as_str());
        let refs = ClusterRefs::of(x, &name);
        c.cluster(&name, refs);
    }
    let name = |e: &ClusterLoadAssignment| Arc::from(e.cluster_name.as_str());
    r.endpoints.iter().for_each(|e| c.assignment(&name(e)));
    r.listeners.iter().for_each(|l| c.listener(l));
    r.routes.iter().for_each(|x| c.route(x));
    r.extensions.iter().for_each(|x| c.extension(x));
    c.finish(plugin)
}

/// The names a cluster gives other resources, read from its message (apart from the checks,
/// so that it can be read where the cluster is encoded, in parallel).
#[derive(Debug)]
pub struct ClusterRefs {
    /// The EDS service whose load assignment it needs (EDS clusters only).
    eds: Option<Arc<str>>,
    /// The clusters it lists (aggregate clusters only).
    members: Vec<String>,
}

impl ClusterRefs {
    /// The references of `c`, named `name`.
    pub fn of(c: &Cluster, name: &Arc<str>) -> Self {
        let eds = is_eds(c).then(|| {
            let service = c.eds_cluster_config.as_ref().map(|e| &e.service_name);
            match service.filter(|s| !s.is_empty() && **s != **name) {
                Some(s) => Arc::from(s.as_str()),
                None => Arc::clone(name),
            }
        });
        ClusterRefs {
            eds,
            members: aggregate_members(c),
        }
    }
}

/// The checks of [`validate`], fed one resource at a time (so a snapshot can be checked while
/// it is encoded, without holding every message): names are kept, messages are not.
#[derive(Default)]
pub struct Checker {
    clusters: HashSet<Arc<str>>,
    /// Service names of EDS clusters, and the load assignments there are.
    eds: HashSet<Arc<str>>,
    assignments: HashSet<Arc<str>>,
    /// Aggregates and the clusters they list: checked at the end (on every core).
    aggregates: Vec<(Arc<str>, Vec<String>)>,
    hcms: Vec<HttpConnectionManager>,
    routes: Vec<RouteConfiguration>,
    extensions: HashSet<String>,
    errors: Vec<String>,
}

impl Checker {
    /// Room for this many direct (EDS) clusters with their load assignments, and other
    /// clusters (aggregates).
    pub fn reserve(&mut self, direct: usize, clusters: usize) {
        self.clusters.reserve(direct + clusters);
        self.eds.reserve(direct);
        self.assignments.reserve(direct);
        self.aggregates.reserve(clusters);
    }

    /// A cluster named `name` (its own name, shared) that refers to `refs`.
    pub fn cluster(&mut self, name: &Arc<str>, refs: ClusterRefs) {
        if !self.clusters.insert(Arc::clone(name)) {
            self.errors.push(format!("duplicate cluster name {name:?}"));
        }
        if let Some(service) = refs.eds {
            self.eds.insert(service);
        }
        if !refs.members.is_empty() {
            self.aggregates.push((Arc::clone(name), refs.members));
        }
    }

    /// The load assignment of the EDS service `name`.
    pub fn assignment(&mut self, name: &Arc<str>) {
        self.assignments.insert(Arc::clone(name));
    }

    pub fn listener(&mut self, l: &Listener) {
        self.hcms.extend(http_connection_managers(l));
    }

    pub fn route(&mut self, r: &RouteConfiguration) {
        self.routes.push(r.clone());
    }

    pub fn extension(&mut self, e: &TypedExtensionConfig) {
        self.extensions.insert(e.name.clone());
    }

    /// Run the checks that need every resource.
    pub fn finish(mut self, plugin: &ConfigV1) -> Result<(), XdsError> {
        self.check_aggregates();
        self.check_eds();
        let upstreams: Vec<&str> = plugin_upstreams(plugin).collect();
        let unknown = upstreams
            .par_iter()
            .filter(|u| !self.clusters.contains(**u));
        let unknown = unknown.map(|u| format!("plugin upstream {u:?} is not a cluster"));
        let unknown: Vec<String> = unknown.collect();
        self.errors.extend(unknown);
        self.check_listeners(plugin);
        let mut errors = self.errors;
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

    /// Every cluster an aggregate lists is another cluster.
    fn check_aggregates(&mut self) {
        let clusters = &self.clusters;
        let unknown = self.aggregates.par_iter().flat_map_iter(|(name, members)| {
            let unknown = members
                .iter()
                .filter(|m| !clusters.contains(m.as_str()) || **m == **name);
            unknown.map(move |m| format!("aggregate {name:?} names unknown cluster {m:?}"))
        });
        let unknown: Vec<String> = unknown.collect();
        self.errors.extend(unknown);
    }

    /// Each EDS cluster has exactly its endpoints.
    fn check_eds(&mut self) {
        let absent = |a: &HashSet<Arc<str>>, b: &HashSet<Arc<str>>| -> Vec<Arc<str>> {
            a.par_iter().filter(|x| !b.contains(*x)).cloned().collect()
        };
        let mut missing = absent(&self.eds, &self.assignments);
        let mut orphans = absent(&self.assignments, &self.eds);
        missing.sort();
        orphans.sort();
        for m in missing {
            let e = format!("EDS cluster {m:?} has no endpoints resource");
            self.errors.push(e);
        }
        for a in orphans {
            self.errors
                .push(format!("endpoints {a:?} belong to no EDS cluster"));
        }
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
impl Checker {
    fn check_listeners(&mut self, plugin: &ConfigV1) {
        let (errors, extensions) = (&mut self.errors, &self.extensions);
        let routes: std::collections::HashSet<&str> =
            self.routes.iter().map(|x| x.name.as_str()).collect();
        for hcm in &self.hcms {
            match &hcm.route_specifier {
                Some(RouteSpecifier::Rds(rds))
                    if routes.contains(rds.route_config_name.as_str()) => {}
                _ => errors.push(format!(
                    "listener {:?}: no served route configuration",
                    hcm.stat_prefix
                )),
            }
            for f in &hcm.http_filters {
                if let Some(http_filter::ConfigType::ConfigDiscovery(d)) = &f.config_type {
                    if !extensions.contains(&f.name) || d.type_urls != [WASM_TYPE_URL] {
                        errors.push(format!(
                            "http filter {:?}: no served extension config",
                            f.name
                        ));
                    }
                }
            }
        }
        for (route, action) in self.routes.iter().flat_map(|rc| {
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
