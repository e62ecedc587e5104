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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
use crate::derive::{
    render_template, DeriveOptions, Derived, MemberSnapshot, PortRef, RouteOrigin, SvcRef,
};
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
/// assignments in batches, each resource first turned into what the sink keeps
/// ([`Sink::keep_direct`], [`Sink::keep_cluster`]) on the core that built it, so a fleet's
/// messages are never all held at once, nor even a batch of them.
pub(crate) trait Sink {
    /// What the sink keeps of a direct cluster and its load assignment, of another cluster.
    type Direct: Send;
    type Cluster: Send;
    fn keep_direct(c: Cluster, a: ClusterLoadAssignment) -> Self::Direct;
    fn keep_cluster(c: Cluster) -> Self::Cluster;
    /// Room for this many direct clusters (with their load assignments) and other clusters:
    /// memory grown once, not by doubling (fresh pages are dear).
    fn reserve(&mut self, direct: usize, clusters: usize);
    /// Direct clusters, each with its load assignment, in name order.
    fn direct(&mut self, batch: Vec<Self::Direct>);
    /// Other clusters: the aggregates in name order, then the `.wasm` source.
    fn clusters(&mut self, batch: Vec<Self::Cluster>);
    fn listener(&mut self, l: Listener);
    fn route(&mut self, r: RouteConfiguration);
    fn extension(&mut self, e: TypedExtensionConfig);
}

impl Sink for Resources {
    type Direct = (Cluster, ClusterLoadAssignment);
    type Cluster = Cluster;
    fn keep_direct(c: Cluster, a: ClusterLoadAssignment) -> Self::Direct {
        (c, a)
    }
    fn keep_cluster(c: Cluster) -> Cluster {
        c
    }
    fn reserve(&mut self, direct: usize, clusters: usize) {
        self.clusters.reserve(direct + clusters);
        self.endpoints.reserve(direct);
    }
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
pub(crate) fn emit<S: Sink>(
    derived: &Derived,
    members: &[MemberSnapshot],
    opts: &XdsOptions,
    sink: &mut S,
) -> Result<Emitted, XdsError> {
    let mut sorted: Vec<&MemberSnapshot> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|a, b| a.id == b.id);
    let config = derived.config();
    let services = first_services(&config.routes, derived.origins(), &sorted);
    let mut plan = Plan::of_services(&services, &sorted, opts);
    let unresolved_mirrors = plan.add_mirrors(&config.routes, &sorted, opts);
    sink.listener(listener::listener(opts.listener));
    let (cluster_header, mirror_header) = (&config.cluster_header, &config.mirror_header);
    sink.route(listener::route_config(cluster_header, mirror_header));
    let json = String::from_utf8_lossy(&derived.json);
    sink.extension(listener::plugin(&json, &opts.wasm));
    let direct: Vec<(String, Direct)> = plan.direct.into_iter().collect();
    sink.reserve(direct.len(), plan.aggregates.len() + 1);
    for chunk in direct.chunks(BATCH) {
        let kept = chunk.par_iter().map(|(n, d)| d.resources(n));
        sink.direct(kept.map(|(c, a)| S::keep_direct(c, a)).collect());
    }
    let aggregates: Vec<(String, Vec<String>)> = plan.aggregates.into_iter().collect();
    for chunk in aggregates.chunks(BATCH) {
        let kept = chunk.par_iter().map(|(n, m)| clusters::aggregate(n, m));
        sink.clusters(kept.map(S::keep_cluster).collect());
    }
    if let Some(c) = clusters::wasm_source(&opts.wasm)? {
        sink.clusters(vec![S::keep_cluster(c)]);
    }
    // Freed on every core (800,000 strings).
    aggregates.into_par_iter().for_each(drop);
    let direct = direct.into_par_iter().map(|(name, d)| {
        let member = d.member.id.clone();
        (name, DirectTarget { member, svc: d.svc })
    });
    let direct: Vec<_> = direct.collect();
    Ok(Emitted {
        // In name order already: built in bulk, not searched for each insert.
        direct: direct.into_iter().collect(),
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

/// Each Service port the routes name, once, with the member order of the first route that
/// names it (that route decides its aggregates' order).
fn first_services<'r, 'm>(
    routes: &[RouteV1],
    origins: impl Iterator<Item = &'r RouteOrigin>,
    sorted: &[&'m MemberSnapshot],
) -> Vec<(&'r SvcRef, Arc<[&'m MemberSnapshot]>)> {
    let mut seen = HashSet::new();
    let mut firsts = Vec::new();
    for (route, origin) in routes.iter().zip(origins) {
        let order: Arc<[&MemberSnapshot]> = Arc::from(member_order(route, sorted));
        let new = origin.services.iter().filter(|svc| seen.insert(*svc));
        firsts.extend(new.map(|svc| (svc, Arc::clone(&order))));
    }
    firsts
}

/// The name of `member`'s direct cluster of `svc` on `port`.
fn direct_name(port: u16, member: &MemberSnapshot, svc: &SvcRef) -> String {
    render_template(DIRECT_TEMPLATE, port, &member.id, &svc.name, &svc.namespace)
}

/// By name, the first entry of each name kept (a name is planned by the first Service port,
/// in route order, that yields it). Sorted by the 16 bytes after the names' common prefix
/// (held inline: 200,000 names compared through pointers were a third of the plan's time),
/// by the whole names only where those tie.
fn first_by_name<V: Send + Sync>(named: Vec<(String, V)>) -> BTreeMap<String, V> {
    let skip = named.first().map_or(0, |(first, _)| {
        let common = |n: &String| {
            let same = first.bytes().zip(n.bytes()).take_while(|(a, b)| a == b);
            same.count()
        };
        named.iter().map(|(n, _)| common(n)).min().unwrap_or(0)
    });
    let key = |n: &str| {
        let rest = &n.as_bytes()[skip..];
        let mut k = [0u8; 16];
        let len = rest.len().min(16);
        k[..len].copy_from_slice(&rest[..len]);
        u128::from_be_bytes(k)
    };
    let mut order: Vec<(u128, usize)> = named.iter().map(|(n, _)| key(n)).zip(0..).collect();
    let name = |i: usize| named[i].0.as_str();
    order.par_sort_unstable_by(|a, b| {
        let by_name = || name(a.1).cmp(name(b.1));
        a.0.cmp(&b.0).then_with(by_name).then(a.1.cmp(&b.1))
    });
    let mut slots: Vec<Option<(String, V)>> = named.into_iter().map(Some).collect();
    let mut sorted: Vec<(String, V)> = Vec::with_capacity(slots.len());
    for (_, i) in order {
        let Some(entry) = slots[i].take() else {
            continue;
        };
        if sorted.last().is_none_or(|(last, _)| *last != entry.0) {
            sorted.push(entry);
        }
    }
    sorted.into_iter().collect()
}

/// The clusters of one Service port: its direct clusters, and its aggregates by name.
type ServicePlan<'a> = (Vec<(String, Direct<'a>)>, Vec<(String, Vec<String>)>);

impl<'a> Plan<'a> {
    /// The clusters of `services`, planned in parallel.
    fn of_services(
        services: &[(&SvcRef, Arc<[&'a MemberSnapshot]>)],
        sorted: &[&MemberSnapshot],
        opts: &XdsOptions,
    ) -> Self {
        let plans: Vec<ServicePlan<'a>> = services
            .par_iter()
            .filter_map(|(svc, order)| plan_service(svc, order, sorted, opts))
            .collect();
        let direct = plans.iter().map(|(d, _)| d.len()).sum();
        let aggregates = plans.iter().map(|(_, a)| a.len()).sum();
        let (mut direct, mut aggregates) =
            (Vec::with_capacity(direct), Vec::with_capacity(aggregates));
        for (d, a) in plans {
            direct.extend(d);
            aggregates.extend(a);
        }
        Plan {
            direct: first_by_name(direct),
            aggregates: first_by_name(aggregates),
        }
    }

    /// The direct cluster of `svc` in `member`, added once.
    fn add_direct(&mut self, member: &'a MemberSnapshot, svc: &SvcRef, port: u16) -> String {
        let name = direct_name(port, member, svc);
        self.direct.entry(name.clone()).or_insert_with(|| Direct {
            member,
            svc: svc.clone(),
        });
        name
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

/// Direct clusters of `svc` in every member, and per member the aggregate the plugin names:
/// that member first, then the others in `order` (up to `failover_members`). `None` when no
/// member resolves its port.
fn plan_service<'a>(
    svc: &SvcRef,
    order: &[&'a MemberSnapshot],
    sorted: &[&MemberSnapshot],
    opts: &XdsOptions,
) -> Option<ServicePlan<'a>> {
    let port = svc.port_number(sorted)?;
    let direct: Vec<String> = order.iter().map(|m| direct_name(port, m, svc)).collect();
    let aggregates = order.iter().enumerate().map(|(i, m)| {
        let template = &opts.upstream_template;
        let name = render_template(template, port, &m.id, &svc.name, &svc.namespace);
        let others = direct.iter().enumerate().filter(|(j, _)| *j != i);
        let others = others.take(opts.failover_members.saturating_sub(1));
        let mut list = vec![direct[i].clone()];
        list.extend(others.map(|(_, d)| d.clone()));
        (name, list)
    });
    let aggregates = aggregates.collect();
    let direct = direct.into_iter().zip(order).map(|(name, member)| {
        let svc = svc.clone();
        (name, Direct { member, svc })
    });
    Some((direct.collect(), aggregates))
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

#[cfg(test)]
mod tests {
    use super::first_by_name;

    #[test]
    fn names_are_sorted_and_the_first_of_each_name_is_kept() {
        // A long common prefix, names that differ only past the 16 inline bytes, a name that
        // is a prefix of another, and repeats.
        let prefix = "direct|80|member-";
        let long = |tail: &str| format!("{prefix}0123456789abcdef{tail}");
        let named = vec![
            (long("b"), 1),
            (format!("{prefix}2"), 2),
            (long("a"), 3),
            (long("b"), 4),
            (format!("{prefix}1"), 5),
            (format!("{prefix}2"), 6),
            (long(""), 7),
        ];
        let mut want: Vec<(String, i32)> = Vec::new();
        for (n, v) in named.clone() {
            if !want.iter().any(|(m, _)| *m == n) {
                want.push((n, v));
            }
        }
        want.sort();
        let got: Vec<(String, i32)> = first_by_name(named).into_iter().collect();
        assert_eq!(got, want);
    }
}
