//! A member cluster's Services and EndpointSlices, reduced to what routing needs and indexed by
//! `(namespace, service)`, so counting the endpoints of one Service port costs only that
//! Service's endpoints, however large the member.
//!
//! Ports resolve as Kubernetes resolves them: an Ingress backend port (number or name) names an
//! entry of the member's `Service.spec.ports` (by `port` or by `name`); EndpointSlices carry the
//! Service port's *name* (empty for an unnamed single-port Service) with the *target* port
//! number, so the Service port's name is what selects the slice port. A member without the
//! Service has no endpoints for it.
//!
//! Memory is what a fleet of 10,000 Services x 20 members costs, so the views are compact:
//! boxed strings and slices, one address per endpoint (the one consumers use), pods by hash.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::hashing::hash_of;

/// EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of a Service.
pub type SvcKey = (String, String);

/// A stable hash of a Service key: change logs and dependency maps use it (a collision only
/// makes an incremental derive rebuild a little more).
pub fn svc_hash(key: &SvcKey) -> u64 {
    hash_of(key)
}

/// The Ingress port a backend names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// One entry of `Service.spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Empty for the unnamed port of a single-port Service.
    pub name: Arc<str>,
    pub port: u16,
}

/// One endpoint of a slice, with the conditions routing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// The first address (consumers use only the first: EndpointSlice API).
    pub address: Address,
    /// Hash of the pod (`targetRef` namespace/name) when known: a pod appears once per address
    /// family.
    pub pod: Option<u64>,
    /// `conditions.ready` (absent counts as ready, as the API says).
    pub ready: bool,
    /// `conditions.serving` (absent: same as ready).
    pub serving: bool,
    pub terminating: bool,
    pub zone: Option<Box<str>>,
}

impl EndpointView {
    /// Ready for new traffic: ready and not terminating.
    pub fn is_ready(&self) -> bool {
        self.ready && !self.terminating
    }
    /// The identity a pod keeps across the IPv4 and IPv6 slices of a dual-stack Service.
    fn identity(&self) -> u64 {
        self.pod.unwrap_or_else(|| hash_of(&self.address))
    }
}

/// An endpoint address: an IP (no allocation) or, in an FQDN slice, a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(IpAddr),
    Name(Box<str>),
}

impl Address {
    fn parse(s: &str) -> Address {
        s.parse()
            .map_or_else(|_| Address::Name(s.into()), Address::Ip)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Name(n) => f.write_str(n),
        }
    }
}

/// An EndpointSlice reduced to its ports and endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    pub address_type: AddressType,
    /// (Service port name, target port number).
    pub ports: Box<[(Arc<str>, Option<u16>)]>,
    pub endpoints: Box<[EndpointView]>,
}

/// `addressType` of a slice (ordered: IPv4 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddressType {
    IPv4,
    IPv6,
    Fqdn,
}

impl SliceView {
    /// The target port number this slice gives the Service port `name`, if it carries it.
    pub fn target_port(&self, name: &str) -> Option<Option<u16>> {
        self.ports
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, port)| *port)
    }
}

/// What one member knows of one Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `spec.ports`, or `None` while the member has no such Service.
    pub ports: Option<Box<[ServicePort]>>,
    /// Slices by name (a Service has a few; a list costs far less than a map).
    pub slices: Vec<(Box<str>, SliceView)>,
    /// Endpoint counts per entry of `ports`, kept up to date on every change (derive reads
    /// them for every route and every member).
    counts: Box<[EndpointCount]>,
}

impl ServiceEntry {
    fn recount(&mut self) {
        let ports = self.ports.iter().flatten();
        self.counts = ports.map(|p| count_port(&self.slices, &p.name)).collect();
    }

    fn slice_mut(&mut self, name: &str) -> Option<&mut SliceView> {
        self.slices
            .iter_mut()
            .find(|(n, _)| **n == *name)
            .map(|(_, s)| s)
    }
}

/// Ready and not-ready endpoints of one Service port in one member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCount {
    pub ready: u32,
    /// Not ready and not terminating (a terminating pod is a rollout, not trouble).
    pub not_ready: u32,
}

/// One member's Services and EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIndex {
    /// Names this history: versions of two indexes built apart are not comparable.
    history: u64,
    services: HashMap<SvcKey, ServiceEntry>,
    /// The last version handed to an entry.
    version: u64,
    /// The most recent changes, `(version, Service hash)`, so an incremental derive can ask
    /// what changed since the version it saw (bounded: older history is forgotten).
    changes: VecDeque<(u64, u64)>,
    /// Port names, shared (every Service repeats `http`, `metrics`...).
    names: HashSet<Arc<str>>,
}

/// A member's objects as a relist delivers them, reduced one by one (so a member's whole list
/// is never held as full objects), then swapped in by [`MemberIndex::replace_services`] or
/// [`MemberIndex::replace_slices`].
#[derive(Debug, Default)]
pub struct Relist {
    names: HashSet<Arc<str>>,
    services: HashMap<SvcKey, Box<[ServicePort]>>,
    slices: HashMap<SvcKey, Vec<(Box<str>, SliceView)>>,
}

impl Relist {
    pub fn add_service(&mut self, s: &Service) {
        if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
            let ports = service_ports(s, &mut self.names);
            self.services.insert((ns.clone(), name.clone()), ports);
        }
    }

    pub fn add_slice(&mut self, s: &EndpointSlice) {
        if let Some((key, name)) = slice_key(s) {
            let view = slice_view(s, &mut self.names);
            let slices = self.slices.entry(key).or_default();
            slices.retain(|(n, _)| **n != *name);
            slices.push((name.into(), view));
        }
    }

    pub fn of_services(all: &[Service]) -> Relist {
        let mut r = Relist::default();
        all.iter().for_each(|s| r.add_service(s));
        r
    }

    pub fn of_slices(all: &[EndpointSlice]) -> Relist {
        let mut r = Relist::default();
        all.iter().for_each(|s| r.add_slice(s));
        r
    }
}

/// One shared copy of a port name.
fn intern(names: &mut HashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(n) = names.get(name) {
        return Arc::clone(n);
    }
    let n: Arc<str> = name.into();
    names.insert(Arc::clone(&n));
    n
}

/// Changes remembered per member for incremental derivation.
const CHANGE_LOG: usize = 65_536;

impl Default for MemberIndex {
    fn default() -> Self {
        static HISTORIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        MemberIndex {
            history: HISTORIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            services: HashMap::new(),
            version: 0,
            changes: VecDeque::new(),
            names: HashSet::new(),
        }
    }
}

impl MemberIndex {
    /// Build from whole objects (dumps, tests).
    pub fn from_objects(services: &[Service], slices: &[EndpointSlice]) -> MemberIndex {
        let mut index = MemberIndex::default();
        for s in services {
            index.apply_service(s);
        }
        for s in slices {
            index.apply_slice(s);
        }
        index
    }

    pub fn service(&self, key: &SvcKey) -> Option<&ServiceEntry> {
        self.services.get(key)
    }

    /// Every Service known (for xDS and diagnostics).
    pub fn services(&self) -> impl Iterator<Item = (&SvcKey, &ServiceEntry)> {
        self.services.iter()
    }

    /// Add or replace a Service. Returns its key (`None` for an object without a name).
    pub fn apply_service(&mut self, s: &Service) -> Option<SvcKey> {
        let key = (s.metadata.namespace.clone()?, s.metadata.name.clone()?);
        let ports = service_ports(s, &mut self.names);
        self.update(&key, |e| e.ports = Some(ports));
        Some(key)
    }

    pub fn delete_service(&mut self, s: &Service) -> Option<SvcKey> {
        let key = (s.metadata.namespace.clone()?, s.metadata.name.clone()?);
        self.update(&key, |e| e.ports = None);
        Some(key)
    }

    /// Add or replace a slice. Slices without the service-name label belong to no Service
    /// (custom or mirrored slices) and are ignored: returns `None`.
    pub fn apply_slice(&mut self, s: &EndpointSlice) -> Option<SvcKey> {
        let (key, name) = slice_key(s)?;
        let view = slice_view(s, &mut self.names);
        self.update(&key, |e| match e.slice_mut(&name) {
            Some(old) => *old = view,
            None => e.slices.push((name.into(), view)),
        });
        Some(key)
    }

    pub fn delete_slice(&mut self, s: &EndpointSlice) -> Option<SvcKey> {
        let (key, name) = slice_key(s)?;
        self.update(&key, |e| e.slices.retain(|(n, _)| **n != *name));
        Some(key)
    }

    /// Replace all Services with a relist's, keeping the slices; only what differs changes.
    pub fn replace_services(&mut self, mut relist: Relist) {
        let keys: BTreeSet<SvcKey> = (self.services.keys())
            .chain(relist.services.keys())
            .cloned()
            .collect();
        for k in keys {
            let ports = relist.services.remove(&k);
            if self.services.get(&k).map(|e| &e.ports) != Some(&ports) {
                self.update(&k, |e| e.ports = ports);
            }
        }
    }

    /// Replace all slices with a relist's, keeping the Services; only what differs changes.
    pub fn replace_slices(&mut self, mut relist: Relist) {
        let keys: BTreeSet<SvcKey> = (self.services.keys())
            .chain(relist.slices.keys())
            .cloned()
            .collect();
        for k in keys {
            let slices = relist.slices.remove(&k).unwrap_or_default();
            if self.services.get(&k).is_none_or(|e| e.slices != slices) {
                self.update(&k, |e| e.slices = slices);
            }
        }
    }

    /// Where this index's history stands: (history, version of the latest change), a cursor
    /// for [`MemberIndex::changed_since`].
    pub fn cursor(&self) -> (u64, u64) {
        (self.history, self.version)
    }

    /// The Services changed after `version`, or `None` when that is older than the history
    /// kept (then everything must count as changed).
    pub fn changed_since(
        &self,
        (history, version): (u64, u64),
    ) -> Option<impl Iterator<Item = u64> + '_> {
        let known = history == self.history
            && match self.changes.front() {
                Some((oldest, _)) => version + 1 >= *oldest,
                None => version >= self.version,
            };
        // Versions in the log ascend: skip to the first one after `version`.
        let first = self.changes.partition_point(|(v, _)| *v <= version);
        known.then(|| self.changes.range(first..).map(|(_, k)| *k))
    }

    /// Change one entry: recount, log the change, drop the entry once empty.
    fn update(&mut self, key: &SvcKey, f: impl FnOnce(&mut ServiceEntry)) {
        self.version += 1;
        if self.changes.len() == CHANGE_LOG {
            self.changes.pop_front();
        }
        self.changes.push_back((self.version, svc_hash(key)));
        let e = self.services.entry(key.clone()).or_default();
        f(e);
        // Most Services have one slice: keep the list exactly that long.
        e.slices.shrink_to_fit();
        e.recount();
        if e.ports.is_none() && e.slices.is_empty() {
            self.services.remove(key);
        }
    }

    /// The Service port an Ingress backend names, if this member has the Service and the port.
    pub fn service_port(&self, key: &SvcKey, port: &PortRef) -> Option<&ServicePort> {
        let ports = self.services.get(key)?.ports.as_ref()?;
        ports.iter().find(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(name) => *p.name == **name,
        })
    }

    /// Endpoints serving the Service port `port` names (0 when the member lacks the Service or
    /// the port). Pods are counted once, across address families and slices.
    pub fn count(&self, key: &SvcKey, port: &PortRef) -> EndpointCount {
        let Some(e) = self.services.get(key) else {
            return EndpointCount::default();
        };
        let ports = e.ports.as_deref().unwrap_or(&[]);
        let at = ports.iter().position(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(name) => *p.name == **name,
        });
        at.and_then(|i| e.counts.get(i).copied())
            .unwrap_or_default()
    }

    /// Endpoints of the slices that carry the Service port named `port_name`.
    pub fn endpoints<'a>(
        &'a self,
        key: &SvcKey,
        port_name: &'a str,
    ) -> impl Iterator<Item = &'a EndpointView> + 'a {
        let slices = self.services.get(key).map(|e| &e.slices);
        port_endpoints(slices.into_iter().flatten().map(|(_, s)| s), port_name)
    }
}

fn port_endpoints<'a>(
    slices: impl Iterator<Item = &'a SliceView> + 'a,
    port_name: &'a str,
) -> impl Iterator<Item = &'a EndpointView> + 'a {
    slices
        .filter(move |s| s.target_port(port_name).is_some())
        .flat_map(|s| s.endpoints.iter())
}

/// Ready and not-ready pods of the slices carrying the Service port `port_name`.
fn count_port(slices: &[(Box<str>, SliceView)], port_name: &str) -> EndpointCount {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for ep in port_endpoints(slices.iter().map(|(_, s)| s), port_name) {
        if ep.is_ready() {
            ready.insert(ep.identity());
        } else if !ep.terminating {
            not_ready.insert(ep.identity());
        }
    }
    EndpointCount {
        ready: ready.len() as u32,
        not_ready: not_ready.difference(&ready).count() as u32,
    }
}

fn service_ports(s: &Service, names: &mut HashSet<Arc<str>>) -> Box<[ServicePort]> {
    let ports = s.spec.as_ref().and_then(|sp| sp.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePort {
                name: intern(names, p.name.as_deref().unwrap_or_default()),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect()
}

fn slice_key(s: &EndpointSlice) -> Option<(SvcKey, String)> {
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ns = s.metadata.namespace.clone()?;
    Some(((ns, svc.clone()), s.metadata.name.clone()?))
}

fn slice_view(s: &EndpointSlice, names: &mut HashSet<Arc<str>>) -> SliceView {
    let ports = s.ports.iter().flatten().map(|p| {
        let n = p.port.and_then(|n| u16::try_from(n).ok());
        (intern(names, p.name.as_deref().unwrap_or_default()), n)
    });
    let endpoints = s.endpoints.iter().map(|ep| {
        let c = ep.conditions.as_ref();
        let ready = c.and_then(|c| c.ready) != Some(false);
        EndpointView {
            address: Address::parse(ep.addresses.first().map_or("", String::as_str)),
            pod: ep.target_ref.as_ref().and_then(|r| {
                let pod = format!("{}/{}", r.namespace.as_deref()?, r.name.as_deref()?);
                Some(hash_of(&pod))
            }),
            ready,
            serving: c.and_then(|c| c.serving).unwrap_or(ready),
            terminating: c.and_then(|c| c.terminating) == Some(true),
            zone: ep.zone.as_deref().map(Box::from),
        }
    });
    SliceView {
        address_type: match s.address_type.as_str() {
            "IPv6" => AddressType::IPv6,
            "FQDN" => AddressType::Fqdn,
            _ => AddressType::IPv4,
        },
        ports: ports.collect(),
        endpoints: endpoints.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn slice(
        name: &str,
        family: &str,
        port_name: &str,
        eps: &[(&str, &str, Option<bool>, bool)],
    ) -> EndpointSlice {
        let eps: String = eps
            .iter()
            .map(|(addr, pod, ready, term)| {
                let ready = ready.map_or(String::new(), |r| format!("ready: {r}, "));
                format!(
                    "- addresses: [\"{addr}\"]\n  conditions: {{{ready}terminating: {term}}}\n  targetRef: {{kind: Pod, namespace: default, name: {pod}}}\n"
                )
            })
            .collect();
        serde_yaml::from_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: {family}\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{kubernetes.io/service-name: shop}}\nports:\n- {{name: \"{port_name}\", port: 8080, protocol: TCP}}\n- {{name: metrics, port: 9102, protocol: TCP}}\nendpoints:\n{eps}"
        ))
        .unwrap()
    }

    const SHOP: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: default}\nspec:\n  ports:\n  - {name: http, port: 80, protocol: TCP, targetPort: 8080}\n  - {name: metrics, port: 9090, protocol: TCP, targetPort: metrics}\n";

    fn key() -> SvcKey {
        ("default".into(), "shop".into())
    }

    #[test]
    fn an_ingress_port_resolves_through_the_service_to_the_slice_port_name() {
        let eps = [
            ("10.0.0.1", "a", Some(true), false),
            ("10.0.0.2", "b", None, false),
        ];
        let idx = MemberIndex::from_objects(&[svc(SHOP)], &[slice("s1", "IPv4", "http", &eps)]);
        // Port 80 is the Service port; the slice says 8080 (the target): still 2 ready.
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 2);
        assert_eq!(idx.count(&key(), &PortRef::Name("http".into())).ready, 2);
        assert_eq!(idx.count(&key(), &PortRef::Name("metrics".into())).ready, 2);
        // 8080 is no Service port, and 9090 is one the slices do not carry under that number.
        assert_eq!(idx.count(&key(), &PortRef::Number(8080)).ready, 0);
        assert_eq!(
            idx.service_port(&key(), &PortRef::Number(9090))
                .unwrap()
                .name,
            "metrics".into()
        );
    }

    #[test]
    fn a_member_without_the_service_counts_nothing() {
        let eps = [("10.0.0.1", "a", Some(true), false)];
        let idx = MemberIndex::from_objects(&[], &[slice("s1", "IPv4", "http", &eps)]);
        assert_eq!(
            idx.count(&key(), &PortRef::Number(80)),
            EndpointCount::default()
        );
        assert_eq!(
            idx.count(&("staging".into(), "shop".into()), &PortRef::Number(80))
                .ready,
            0
        );
    }

    #[test]
    fn unnamed_single_port_services_match_their_only_slice_port() {
        let s = svc("apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: default}\nspec:\n  ports:\n  - {port: 80, protocol: TCP, targetPort: 8080}\n");
        let eps = [("10.0.0.1", "a", Some(true), false)];
        let idx = MemberIndex::from_objects(&[s], &[slice("s1", "IPv4", "", &eps)]);
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 1);
    }

    #[test]
    fn terminating_and_unready_endpoints_and_dual_stack_pods_count_once() {
        let v4 = [
            ("10.0.0.1", "a", Some(true), false),
            ("10.0.0.2", "b", Some(false), true),
            ("10.0.0.3", "c", Some(false), false),
        ];
        let v6 = [
            ("fd00::1", "a", Some(true), false),
            ("fd00::2", "b", Some(false), true),
            ("fd00::3", "c", Some(false), false),
        ];
        let mut idx = MemberIndex::from_objects(
            &[svc(SHOP)],
            &[
                slice("v4", "IPv4", "http", &v4),
                slice("v6", "IPv6", "http", &v6),
            ],
        );
        let c = idx.count(&key(), &PortRef::Number(80));
        assert_eq!(
            c,
            EndpointCount {
                ready: 1,
                not_ready: 1
            }
        );
        idx.delete_slice(&slice("v4", "IPv4", "http", &[]));
        assert_eq!(
            idx.count(&key(), &PortRef::Number(80)).ready,
            1,
            "IPv6 alone"
        );
        idx.delete_service(&svc(SHOP));
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 0);
    }

    #[test]
    fn a_relist_replaces_slices_and_the_change_log_names_what_changed() {
        let eps = [("10.0.0.1", "a", Some(true), false)];
        let mut idx = MemberIndex::from_objects(&[svc(SHOP)], &[slice("s1", "IPv4", "http", &eps)]);
        let cursor = idx.cursor();
        assert_eq!(idx.changed_since(cursor).map(|c| c.count()), Some(0));
        // The same slices again: nothing changes.
        idx.replace_slices(Relist::of_slices(&[slice("s1", "IPv4", "http", &eps)]));
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 1);
        assert_eq!(idx.changed_since(cursor).map(|c| c.count()), Some(0));
        // One more ready pod in a second slice.
        let more = [("10.0.0.2", "b", Some(true), false)];
        idx.replace_slices(Relist::of_slices(&[
            slice("s1", "IPv4", "http", &eps),
            slice("s2", "IPv4", "http", &more),
        ]));
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 2);
        let changed: Vec<u64> = idx.changed_since(cursor).unwrap().collect();
        assert_eq!(changed, vec![svc_hash(&key())]);
        // Another index's cursor is not comparable: everything counts as changed.
        assert!(idx.changed_since(MemberIndex::default().cursor()).is_none());
    }

    #[test]
    fn slices_without_the_service_label_are_ignored() {
        let mut s = slice(
            "s1",
            "IPv4",
            "http",
            &[("10.0.0.1", "a", Some(true), false)],
        );
        s.metadata.labels = None;
        let mut idx = MemberIndex::from_objects(&[svc(SHOP)], &[]);
        assert_eq!(idx.apply_slice(&s), None);
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 0);
    }

    #[test]
    fn a_service_with_no_ports_serves_nothing() {
        let s = svc("apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: default}\nspec: {clusterIP: None}\n");
        let eps = [("10.0.0.1", "a", Some(true), false)];
        let idx = MemberIndex::from_objects(&[s], &[slice("s1", "IPv4", "http", &eps)]);
        assert_eq!(idx.count(&key(), &PortRef::Number(80)).ready, 0);
        assert_eq!(
            idx.service_port(&key(), &PortRef::Name("http".into())),
            None
        );
    }
}
