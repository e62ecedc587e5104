//! The pure builder: `(Derived, members, options) -> Resources`.
//!
//! Cluster names come from the same templates and the same Service port resolution as the
//! plugin's upstream names, so every upstream the plugin can set is a cluster here
//! ([`crate::xds::validate`] checks it before anything is sent):
//! - `direct|<port>|<member>|<svc>.<ns>.svc.cluster.local`: an EDS cluster of one member's
//!   endpoints of one Service port;
//! - the plugin's upstream (`outbound|<port>|<member>|...`): an aggregate cluster of that
//!   member's direct cluster, then the other members' in the route's order, so a retry or a
//!   member with no healthy host spills to the next member;
//! - the mirror upstream (`outbound|<port>||...`): an aggregate of every member's direct cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use fleetgate_plugin::config::RouteV1;
use rayon::prelude::*;

use super::clusters;
use super::listener;
use super::pb::envoy::config::cluster::v3::Cluster;
use super::pb::envoy::config::core::v3::TypedExtensionConfig;
use super::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use super::pb::envoy::config::listener::v3::Listener;
use super::pb::envoy::config::route::v3::RouteConfiguration;
use super::snapshot::Entry;
use super::{validate, XdsError};
use crate::derive::{render_template, DeriveOptions, Derived, MemberSnapshot, PortRef, SvcRef};
use crate::endpoints::SvcKey;

/// Name template of a member's direct (EDS) cluster.
pub const DIRECT_TEMPLATE: &str = "direct|{port}|{cluster}|{service}.{namespace}.svc.cluster.local";

/// Where Envoy gets the plugin's `.wasm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmCode {
    /// A file on the gateway's host.
    File(PathBuf),
    /// An `http://` URI, checked against its SHA-256 (hex) by Envoy.
    Remote { uri: String, sha256: String },
}

/// Settings of the emitted resources that are not in the snapshot.
#[derive(Debug, Clone)]
pub struct XdsOptions {
    /// Address of the gateway's listener.
    pub listener: SocketAddr,
    pub wasm: WasmCode,
    /// The plugin's upstream and mirror templates (from [`DeriveOptions`]).
    pub upstream_template: String,
    pub mirror_template: String,
    /// Members an aggregate lists (its own first). A request tries at most `1 + RETRIES`
    /// members, so more only matter when all of those have no healthy host at all; the list
    /// grows the CDS with members squared.
    pub failover_members: usize,
}

impl XdsOptions {
    pub fn new(derive: &DeriveOptions, listener: SocketAddr, wasm: WasmCode) -> Self {
        XdsOptions {
            listener,
            wasm,
            upstream_template: derive.upstream_template.clone(),
            mirror_template: derive.mirror_template.clone(),
            failover_members: listener::RETRIES as usize + 1,
        }
    }
}

/// Every resource of one snapshot, each list sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub extensions: Vec<TypedExtensionConfig>,
    /// Mirror upstreams that name no Service any member has (FQDN mirrors included): no
    /// cluster is emitted and Envoy skips the mirror.
    pub unresolved_mirrors: Vec<String>,
    /// Per direct (EDS) cluster, where its endpoints come from (see [`endpoint_entries`]).
    pub direct: BTreeMap<String, DirectTarget>,
}

/// The member and Service port behind a direct cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectTarget {
    pub member: String,
    pub svc: SvcRef,
}

/// The load assignments of `member`'s direct clusters for `services`, rebuilt from its index:
/// after an EndpointSlice change, [`super::Snapshot::with`] these instead of rebuilding everything
/// (valid while the plugin config and the cluster set are unchanged, e.g. a pod replaced).
pub fn endpoint_entries(
    direct: &BTreeMap<String, DirectTarget>,
    member: &MemberSnapshot,
    services: &[SvcKey],
) -> Vec<Entry> {
    changed_endpoint_entries(direct, member, |svc| {
        services
            .iter()
            .any(|(ns, name)| *ns == svc.namespace && *name == svc.name)
    })
}

/// [`endpoint_entries`] for the Services `changed` picks.
pub fn changed_endpoint_entries(
    direct: &BTreeMap<String, DirectTarget>,
    member: &MemberSnapshot,
    changed: impl Fn(&SvcRef) -> bool,
) -> Vec<Entry> {
    direct
        .iter()
        .filter(|(_, t)| t.member == member.id && changed(&t.svc))
        .map(|(name, t)| {
            let cla = clusters::member_load_assignment(name, &member.index, &t.svc, member.gateway);
            Entry::new(name, cla)
        })
        .collect()
}

/// One member's Service port behind a direct cluster.
struct Direct<'a> {
    member: &'a MemberSnapshot,
    svc: SvcRef,
}

/// Cluster names and what they stand for, before any Envoy message is built.
#[derive(Default)]
struct Plan<'a> {
    direct: BTreeMap<String, Direct<'a>>,
    /// Aggregate name -> its direct clusters, in priority order.
    aggregates: BTreeMap<String, Vec<String>>,
}

/// Build and validate every resource. Invalid resources are an error: the caller keeps
/// serving its last good snapshot.
pub fn build(
    derived: &Derived,
    members: &[MemberSnapshot],
    opts: &XdsOptions,
) -> Result<Resources, XdsError> {
    let mut r = Resources::default();
    let emitted = emit(derived, members, opts, &mut r)?;
    r.direct = emitted.direct;
    r.unresolved_mirrors = emitted.unresolved_mirrors;
    r.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    validate::validate(&r, derived.config())?;
    Ok(r)
}

/// Where [`emit`] puts the resources as they are built: the many clusters and load
/// assignments in batches (built in parallel, and a sink may encode them in parallel), so a
/// fleet's messages are never all held at once.
pub(crate) trait Sink {
    /// Direct clusters, each with its load assignment, in name order.
    fn direct(&mut self, batch: Vec<(Cluster, ClusterLoadAssignment)>);
    /// Other clusters: the aggregates in name order, then the `.wasm` source.
    fn clusters(&mut self, batch: Vec<Cluster>);
    fn listener(&mut self, l: Listener);
    fn route(&mut self, r: RouteConfiguration);
    fn extension(&mut self, e: TypedExtensionConfig);
}

impl Sink for Resources {
    fn direct(&mut self, batch: Vec<(Cluster, ClusterLoadAssignment)>) {
        for (c, a) in batch {
            self.clusters.push(c);
            self.endpoints.push(a);
        }
    }
    fn clusters(&mut self, batch: Vec<Cluster>) {
        self.clusters.extend(batch);
    }
    fn listener(&mut self, l: Listener) {
        self.listeners.push(l);
    }
    fn route(&mut self, r: RouteConfiguration) {
        self.routes.push(r);
    }
    fn extension(&mut self, e: TypedExtensionConfig) {
        self.extensions.push(e);
    }
}

/// Resources per batch: enough to keep both cores busy, few enough to hold.
const BATCH: usize = 4096;

/// What [`emit`] tells besides the resources.
pub(crate) struct Emitted {
    pub direct: BTreeMap<String, DirectTarget>,
    pub unresolved_mirrors: Vec<String>,
}

/// Build every resource into `sink` (unvalidated): the listener, routes and plugin, the direct
/// clusters (by name) with their load assignments, then the aggregates (by name), then the
/// `.wasm` source.
pub(crate) fn emit(
    derived: &Derived,
    members: &[MemberSnapshot],
    opts: &XdsOptions,
    sink: &mut impl Sink,
) -> Result<Emitted, XdsError> {
    let mut sorted: Vec<&MemberSnapshot> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|a, b| a.id == b.id);
    let mut plan = Plan::default();
    let config = derived.config();
    for (route, origin) in config.routes.iter().zip(derived.origins()) {
        let order = member_order(route, &sorted);
        for svc in &origin.services {
            plan.add_service(svc, &order, &sorted, opts);
        }
    }
    let unresolved_mirrors = plan.add_mirrors(&config.routes, &sorted, opts);
    sink.listener(listener::listener(opts.listener));
    let (cluster_header, mirror_header) = (&config.cluster_header, &config.mirror_header);
    sink.route(listener::route_config(cluster_header, mirror_header));
    let json = String::from_utf8_lossy(&derived.json);
    sink.extension(listener::plugin(&json, &opts.wasm));
    let direct: Vec<(String, Direct)> = plan.direct.into_iter().collect();
    for chunk in direct.chunks(BATCH) {
        sink.direct(chunk.par_iter().map(|(n, d)| d.resources(n)).collect());
    }
    let aggregates: Vec<(String, Vec<String>)> = plan.aggregates.into_iter().collect();
    for chunk in aggregates.chunks(BATCH) {
        sink.clusters(
            chunk
                .par_iter()
                .map(|(n, m)| clusters::aggregate(n, m))
                .collect(),
        );
    }
    if let Some(c) = clusters::wasm_source(&opts.wasm)? {
        sink.clusters(vec![c]);
    }
    let direct = direct.into_iter().map(|(name, d)| {
        let member = d.member.id.clone();
        (name, DirectTarget { member, svc: d.svc })
    });
    Ok(Emitted {
        // In name order already: built in bulk, not searched for each insert.
        direct: direct.collect(),
        unresolved_mirrors,
    })
}

impl Direct<'_> {
    /// The direct cluster `name` and its load assignment.
    fn resources(&self, name: &str) -> (Cluster, ClusterLoadAssignment) {
        let m = self.member;
        let cla = clusters::member_load_assignment(name, &m.index, &self.svc, m.gateway);
        (clusters::direct(name), cla)
    }
}

/// The route's failover order: its `order` (active-standby), then the other members by id.
fn member_order<'a>(route: &RouteV1, sorted: &[&'a MemberSnapshot]) -> Vec<&'a MemberSnapshot> {
    let listed = route
        .order
        .iter()
        .filter_map(|id| sorted.iter().find(|m| m.id == *id).copied());
    let rest = sorted
        .iter()
        .filter(|m| !route.order.contains(&m.id))
        .copied();
    listed.chain(rest).collect()
}

impl<'a> Plan<'a> {
    /// The direct cluster of `svc` in `member`, added once.
    fn add_direct(&mut self, member: &'a MemberSnapshot, svc: &SvcRef, port: u16) -> String {
        let name = render_template(DIRECT_TEMPLATE, port, &member.id, &svc.name, &svc.namespace);
        self.direct.entry(name.clone()).or_insert_with(|| Direct {
            member,
            svc: svc.clone(),
        });
        name
    }

    /// Direct clusters of `svc` in every member, and per member the aggregate the plugin
    /// names: that member first, then the others in `order` (up to `failover_members`). The first route to name a
    /// Service port decides its order.
    fn add_service(
        &mut self,
        svc: &SvcRef,
        order: &[&'a MemberSnapshot],
        sorted: &[&MemberSnapshot],
        opts: &XdsOptions,
    ) {
        let Some(port) = svc.port_number(sorted) else {
            return;
        };
        let direct: Vec<String> = order
            .iter()
            .map(|m| self.add_direct(m, svc, port))
            .collect();
        for (i, m) in order.iter().enumerate() {
            let template = &opts.upstream_template;
            let name = render_template(template, port, &m.id, &svc.name, &svc.namespace);
            self.aggregates.entry(name).or_insert_with(|| {
                let others = direct.iter().enumerate().filter(|(j, _)| *j != i);
                let others = others.take(opts.failover_members.saturating_sub(1));
                let mut list = vec![direct[i].clone()];
                list.extend(others.map(|(_, d)| d.clone()));
                list
            });
        }
    }

    /// Mirror aggregates over every member, for mirror upstreams that name a Service port some
    /// member has. Returns the mirror upstreams that name none.
    fn add_mirrors(
        &mut self,
        routes: &[RouteV1],
        sorted: &[&'a MemberSnapshot],
        opts: &XdsOptions,
    ) -> Vec<String> {
        let mut wanted: BTreeSet<&str> = routes
            .iter()
            .filter_map(|r| r.mirror.as_ref().map(|m| m.upstream.as_str()))
            .filter(|u| !self.aggregates.contains_key(*u) && !self.direct.contains_key(*u))
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        for (name, (svc, port)) in service_ports(sorted, &opts.mirror_template) {
            if !wanted.remove(name.as_str()) {
                continue;
            }
            let direct = sorted
                .iter()
                .map(|m| self.add_direct(m, &svc, port))
                .collect();
            self.aggregates.insert(name, direct);
        }
        wanted.into_iter().map(str::to_string).collect()
    }
}

/// Every Service port any member has, with its name under `template` (`{cluster}` empty).
fn service_ports(sorted: &[&MemberSnapshot], template: &str) -> BTreeMap<String, (SvcRef, u16)> {
    let mut out = BTreeMap::new();
    for m in sorted {
        for ((ns, name), entry) in m.index.services() {
            for p in entry.ports.iter().flatten() {
                let upstream = render_template(template, p.port, "", name, ns);
                let svc = SvcRef {
                    namespace: ns.clone(),
                    name: name.clone(),
                    port: PortRef::Number(p.port),
                };
                out.entry(upstream).or_insert((svc, p.port));
            }
        }
    }
    out
}
