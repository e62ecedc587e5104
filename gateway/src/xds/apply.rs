//! Applies translated resources to the running gateway and keeps the last good state: a
//! response that fails to translate changes nothing (the caller NACKs it). Clusters go to the
//! shared [`Upstreams`] table, the route table to [`Routes`], the plugin to the workers' feed.

use std::collections::BTreeMap;
use std::mem::discriminant;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use fleetgate_wasm_tests::SharedData;
use prost::{Message, Name};
use tokio::sync::watch;

use super::code::CodeCache;
use super::translate::{self, ClusterKind, ListenerSpec};
use crate::plugin::{self, PluginFeed, PluginSpec};
use crate::routes::Routes;
use crate::upstreams::Upstreams;

/// What the workers need once listener, routes and plugin have arrived.
pub(crate) struct Ready {
    pub(crate) listen: SocketAddr,
    pub(crate) routes: Routes,
    pub(crate) upstreams: Upstreams,
    pub(crate) plugin: PluginFeed,
}

/// The gateway's xDS state.
pub(crate) struct Applied {
    upstreams: Upstreams,
    listen_override: Option<SocketAddr>,
    clusters: BTreeMap<String, ClusterKind>,
    /// EDS service name -> the clusters that take their endpoints from it.
    eds_clusters: BTreeMap<String, Vec<String>>,
    /// Usable endpoints by EDS service name.
    endpoints: BTreeMap<String, Vec<SocketAddr>>,
    listener: Option<ListenerSpec>,
    routes: Option<Routes>,
    plugin: Option<watch::Sender<Arc<PluginSpec>>>,
    code: CodeCache,
}

/// Decodes every resource as `M` (all or nothing).
fn decode_all<M: Message + Name + Default>(resources: &[Any]) -> Result<Vec<M>, String> {
    resources.iter().map(translate::unpack).collect()
}

/// Collects every error, so a NACK lists them all.
fn all_ok<T>(results: impl IntoIterator<Item = Result<T, String>>) -> Result<Vec<T>, String> {
    let (ok, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    if errors.is_empty() {
        return Ok(ok.into_iter().filter_map(Result::ok).collect());
    }
    let errors: Vec<String> = errors.into_iter().filter_map(Result::err).collect();
    Err(errors.join("; "))
}

impl Applied {
    pub(crate) fn new(listen_override: Option<SocketAddr>) -> Self {
        Applied {
            upstreams: Upstreams::new(),
            listen_override,
            clusters: BTreeMap::new(),
            eds_clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            listener: None,
            routes: None,
            plugin: None,
            code: CodeCache::default(),
        }
    }

    /// Listener, routes and plugin, once all three arrived.
    pub(crate) fn ready(&self) -> Option<Ready> {
        let listener = self.listener.as_ref()?;
        Some(Ready {
            listen: self.listen_override.unwrap_or(listener.addr),
            routes: self.routes.clone()?,
            upstreams: self.upstreams.clone(),
            plugin: self.plugin.as_ref()?.subscribe(),
        })
    }

    /// CDS (state of the world): answers the EDS names to subscribe to.
    pub(crate) async fn clusters(&mut self, resources: &[Any]) -> Result<Vec<String>, String> {
        let clusters: Vec<Cluster> = decode_all(resources)?;
        let specs = all_ok(clusters.iter().map(translate::cluster))?;
        let mut fixed = BTreeMap::new();
        for spec in &specs {
            if let ClusterKind::Fixed(hosts) = &spec.kind {
                fixed.insert(spec.name.clone(), resolve(&spec.name, hosts).await?);
            }
        }
        let new: BTreeMap<String, ClusterKind> =
            specs.into_iter().map(|s| (s.name, s.kind)).collect();
        self.install(&new, fixed);
        self.clusters = new;
        self.eds_clusters.clear();
        for (name, kind) in &self.clusters {
            if let ClusterKind::Eds { service_name } = kind {
                let names = self.eds_clusters.entry(service_name.clone()).or_default();
                names.push(name.clone());
            }
        }
        let eds = &self.eds_clusters;
        self.endpoints
            .retain(|service, _| eds.contains_key(service));
        Ok(eds.keys().cloned().collect())
    }

    /// Puts `new` clusters in the table (`fixed`: the resolved STATIC/STRICT_DNS ones).
    fn install(
        &self,
        new: &BTreeMap<String, ClusterKind>,
        mut fixed: BTreeMap<String, Vec<SocketAddr>>,
    ) {
        // Gone, or of another kind now (an aggregate would shadow a plain cluster); the
        // others are replaced in place, never missing for a request.
        let same_kind = |a: &ClusterKind, b: &ClusterKind| discriminant(a) == discriminant(b);
        for (name, old) in &self.clusters {
            if !new.get(name).is_some_and(|k| same_kind(k, old)) {
                self.upstreams.remove(name);
            }
        }
        for (name, kind) in new {
            match kind {
                ClusterKind::Aggregate(members) => {
                    let members: Vec<&str> = members.iter().map(String::as_str).collect();
                    self.upstreams.set_aggregate(name, &members);
                }
                ClusterKind::Fixed(_) => {
                    let addrs = fixed.remove(name).unwrap_or_default();
                    self.upstreams.set_cluster(name, addrs);
                }
                // Warming: a new EDS cluster takes traffic once its endpoints arrive.
                ClusterKind::Eds { service_name } => {
                    if let Some(addrs) = self.endpoints.get(service_name) {
                        self.upstreams.set_cluster(name, addrs.clone());
                    }
                }
            }
        }
    }

    /// EDS: the named load assignments replace those clusters' endpoints.
    pub(crate) fn endpoints(&mut self, resources: &[Any]) -> Result<(), String> {
        let assignments: Vec<ClusterLoadAssignment> = decode_all(resources)?;
        let usable = all_ok(assignments.iter().map(|cla| {
            translate::usable_endpoints(cla).map(|addrs| (cla.cluster_name.clone(), addrs))
        }))?;
        for (service, addrs) in usable {
            for name in self.eds_clusters.get(&service).into_iter().flatten() {
                self.upstreams.set_cluster(name, addrs.clone());
            }
            self.endpoints.insert(service, addrs);
        }
        Ok(())
    }

    /// LDS: the one listener; answers the (RDS, ECDS) names it needs.
    pub(crate) fn listeners(&mut self, resources: &[Any]) -> Result<(String, String), String> {
        let listeners: Vec<Listener> = decode_all(resources)?;
        let [listener] = listeners.as_slice() else {
            return Err(format!(
                "{} listeners (the local gateway serves exactly one)",
                listeners.len()
            ));
        };
        let spec = translate::listener(listener)?;
        if let Some(old) = &self.listener {
            if old.addr != spec.addr && self.listen_override.is_none() {
                return Err(format!(
                    "listener {:?}: moving from {} to {} needs a restart of the local gateway",
                    spec.name, old.addr, spec.addr
                ));
            }
        }
        let names = (spec.route_config.clone(), spec.plugin.clone());
        self.listener = Some(spec);
        Ok(names)
    }

    /// RDS: the listener's route configuration becomes the route table.
    pub(crate) fn routes(&mut self, resources: &[Any]) -> Result<(), String> {
        let configs: Vec<RouteConfiguration> = decode_all(resources)?;
        let wanted = self.listener.as_ref().map(|l| l.route_config.as_str());
        let Some(config) = configs.iter().find(|c| Some(c.name.as_str()) == wanted) else {
            return Ok(());
        };
        let table = translate::route_table(config)?;
        match &self.routes {
            Some(routes) => routes.set(table),
            None => self.routes = Some(Routes::new(table)),
        }
        Ok(())
    }

    /// ECDS: the listener's Wasm filter; a changed plugin is checked in a VM of its own
    /// before workers start instances of it.
    pub(crate) async fn extensions(&mut self, resources: &[Any]) -> Result<(), String> {
        let configs: Vec<TypedExtensionConfig> = decode_all(resources)?;
        let wanted = self.listener.as_ref().map(|l| l.plugin.as_str());
        let Some(config) = configs.iter().find(|c| Some(c.name.as_str()) == wanted) else {
            return Ok(());
        };
        let source = translate::plugin(config)?;
        let (module, code_id) = self.code.load(&source.code, &self.upstreams).await?;
        let spec = PluginSpec {
            module,
            config: source.config,
            code_id,
        };
        if let Some(tx) = &self.plugin {
            if tx.borrow().same_as(&spec) {
                return Ok(());
            }
        }
        let spec = Arc::new(spec);
        let check = Arc::clone(&spec);
        let checked = tokio::task::spawn_blocking(move || {
            plugin::instantiate(&check, SharedData::new())
                .map(drop)
                .map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|e| e.to_string())?;
        checked.map_err(|why| format!("extension config {:?}: {why}", source.name))?;
        match &self.plugin {
            Some(tx) => {
                tx.send_replace(spec);
            }
            None => self.plugin = Some(watch::channel(spec).0),
        }
        Ok(())
    }
}

/// The addresses of a STATIC or STRICT_DNS cluster's hosts (resolved once per update).
async fn resolve(cluster: &str, hosts: &[(String, u16)]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for (host, port) in hosts {
        let found = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("cluster {cluster:?}: resolving {host}: {e}"))?;
        out.extend(found.filter(|a| a.is_ipv4()).take(1));
    }
    Ok(out)
}
