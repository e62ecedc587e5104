//! The pure heart of the controller: `(Ingresses, members' Services and EndpointSlices) ->
//! ConfigV1`.
//!
//! No I/O and no clocks: the caller decides each member's control-plane contact ([`Contact`],
//! from [`crate::health`]) and passes what it has. The output is built from sorted inputs
//! (members by id, routes by name) so the JSON is byte-stable and the revision (a SHA-256 of the
//! JSON without the revision) only changes when the content does.
//!
//! Every failure is contained to the smallest unit it concerns, and reported as a [`Problem`]:
//! a bad canary drops that canary, a bad path that path, a host/path another Ingress already
//! routes only that path of the newer Ingress; a base Ingress that cannot be used leaves its
//! canaries orphaned. An Ingress edited into an invalid state keeps serving its last good
//! version ([`Deriver`] remembers it). Every route is checked with the plugin's own validation
//! before it is admitted, so no single object can make the whole config invalid.
//!
//! Stages: [`ingress`] (one Ingress -> entries), [`claims`] (host/path ownership, canary
//! pairing), [`routes`] (entries -> plugin routes, per member backends), [`finish`] (plugin
//! validation, cluster states, revision).

mod claims;
mod finish;
mod httproute;
mod ingress;
mod routes;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use std::sync::OnceLock;

use bytes::Bytes;
use fleetgate_plugin::config::{self as pcfg, ClusterV1, ConfigError, ConfigV1, RouteV1};
use k8s_openapi::api::networking::v1::Ingress;
use thiserror::Error;

use crate::endpoints::{MemberIndex, SvcKey};
pub use crate::endpoints::{PortRef, SERVICE_NAME_LABEL};
use crate::gateway_api;
pub use crate::settings::PluginSettings;
pub use ingress::{is_ours, LEGACY_CLASS_ANNOTATION};
pub use routes::render_template;
pub use state::Split;

/// Default Envoy cluster name of a Service in one member cluster (Istio subset = member).
pub const DEFAULT_UPSTREAM_TEMPLATE: &str =
    "outbound|{port}|{cluster}|{service}.{namespace}.svc.cluster.local";
/// Default mirror upstream: the Service across all members (Istio cluster without subset).
pub const DEFAULT_MIRROR_TEMPLATE: &str =
    "outbound|{port}||{service}.{namespace}.svc.cluster.local";
/// Default mirror upstream for `mirror-target-fqdn` (Istio's name for a ServiceEntry host).
pub const DEFAULT_MIRROR_FQDN_TEMPLATE: &str = "outbound|{port}||{host}";

/// What the control plane currently knows of a member cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// The member's watch is live (or recovering within the grace period).
    Live,
    /// The watch has failed for longer than the grace period: keep the last endpoints.
    Lost,
    /// Never synced: no endpoints known at all.
    Never,
}

/// One member cluster as derive sees it.
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub id: String,
    pub zone: Option<String>,
    pub contact: Contact,
    /// The member's Services and EndpointSlices (last known when `contact` is `Lost`).
    pub index: Arc<MemberIndex>,
    /// The member's own gateway (`IP:PORT`) when the fleet gateway cannot reach its pod IPs
    /// (networks that are not flat): xDS then sends its traffic there.
    pub gateway: Option<std::net::SocketAddr>,
}

/// Settings that are not in the objects themselves.
#[derive(Debug, Clone)]
pub struct DeriveOptions {
    /// Our IngressClass name.
    pub ingress_class: String,
    /// Our IngressClass is the cluster default (Ingresses without a class are ours).
    pub class_is_default: bool,
    /// Upstream name template: `{port}`, `{cluster}`, `{service}`, `{namespace}`.
    pub upstream_template: String,
    /// Mirror upstream template (same placeholders; `{cluster}` is empty).
    pub mirror_template: String,
    /// Mirror upstream template for an FQDN target: `{port}`, `{host}`.
    pub mirror_fqdn_template: String,
    /// Plugin-wide settings (headers, passive health, default `when_unavailable`).
    pub settings: PluginSettings,
}

impl Default for DeriveOptions {
    fn default() -> Self {
        DeriveOptions {
            ingress_class: "fleetgate".to_string(),
            class_is_default: false,
            upstream_template: DEFAULT_UPSTREAM_TEMPLATE.to_string(),
            mirror_template: DEFAULT_MIRROR_TEMPLATE.to_string(),
            mirror_fqdn_template: DEFAULT_MIRROR_FQDN_TEMPLATE.to_string(),
            settings: PluginSettings::default(),
        }
    }
}

/// `namespace/name` of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngressKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for IngressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Part of the Ingress (a path, a canary, an annotation) was ignored; the rest is served.
    Warning,
    /// The current version is invalid; its last good version is served instead.
    Stale,
    /// Nothing of the Ingress is served.
    Rejected,
}

/// Something wrong with one Ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub ingress: IngressKey,
    pub severity: Severity,
    pub message: String,
}

impl Problem {
    pub fn new(ingress: &IngressKey, severity: Severity, message: impl Into<String>) -> Self {
        Problem {
            ingress: ingress.clone(),
            severity,
            message: message.into(),
        }
    }
}

/// Why no config could be derived at all.
#[derive(Debug, Error)]
pub enum DeriveError {
    #[error("no member clusters are known")]
    NoMembers,
    #[error("no Ingress of class {0:?} is usable (see its problems); keeping the last config")]
    NoRoutes(String),
    #[error("derived config rejected by the plugin: {0}")]
    Invalid(#[source] ConfigError),
    #[error("cannot serialize config: {0}")]
    Json(#[from] serde_json::Error),
}

/// The kind of object a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OriginKind {
    Ingress,
    HttpRoute,
}

/// Which objects a route came from (for events and problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOrigin {
    pub route: String,
    pub kind: OriginKind,
    /// Position in the config: Ingress routes (`None`) first, by name; then HTTPRoute routes
    /// in the spec's precedence order.
    pub rank: Option<httproute::Precedence>,
    /// The Ingress, or the HTTPRoute, the route is built from.
    pub base: IngressKey,
    pub canaries: Vec<IngressKey>,
    /// Services (base, canaries, fallback) the route sends traffic to.
    pub services: Vec<SvcRef>,
}

/// The result of a derivation.
#[derive(Debug, Clone)]
pub struct Derived {
    /// Compact JSON of the config (what is served; `revision` set).
    pub json: Bytes,
    pub revision: String,
    pub problems: Vec<Problem>,
    /// The routes revision and the state document (`/v1/state`).
    pub split: Split,
    /// The config without its routes (settings, cluster states, revision).
    head: ConfigV1,
    built: Vec<Arc<routes::BuiltBase>>,
    /// (base, route) indexes into `built`, in config order.
    order: Vec<(usize, usize)>,
    config: OnceLock<ConfigV1>,
    plugin: OnceLock<Result<Arc<pcfg::Config>, ConfigError>>,
    /// The Gateway API evaluation (with what translating the routes found), when derived
    /// with Gateway API objects: what their status should say.
    pub gateway_api: Option<gateway_api::Outcome>,
}

impl Derived {
    fn new(
        json: String,
        head: ConfigV1,
        problems: Vec<Problem>,
        built: Vec<Arc<routes::BuiltBase>>,
        order: Vec<(usize, usize)>,
        split: Split,
    ) -> Self {
        Derived {
            json: Bytes::from(json),
            revision: head.revision.clone().unwrap_or_default(),
            problems,
            split,
            head,
            built,
            order,
            config: OnceLock::new(),
            plugin: OnceLock::new(),
            gateway_api: None,
        }
    }

    fn route(&self, (b, r): (usize, usize)) -> &routes::BuiltRoute {
        &self.built[b].routes[r]
    }

    /// Where each route came from, in config order.
    pub fn origins(&self) -> impl Iterator<Item = &RouteOrigin> + Clone {
        self.order.iter().map(|i| &self.route(*i).origin)
    }

    /// Ready endpoints per member (in member order), summed over the distinct base upstreams.
    pub fn ready_by_member(&self) -> Vec<u64> {
        let mut seen: HashSet<u64> = HashSet::new();
        let mut sums = vec![0u64; self.head.clusters.len()];
        for i in &self.order {
            for (sum, u) in sums.iter_mut().zip(&self.route(*i).members) {
                if let Some((upstream, ready)) = u.base {
                    if seen.insert(upstream) {
                        *sum += u64::from(ready);
                    }
                }
            }
        }
        sums
    }

    pub fn route_count(&self) -> usize {
        self.order.len()
    }

    /// The config as the plugin's wire type (built on first use: the hot path needs only the
    /// JSON).
    pub fn config(&self) -> &ConfigV1 {
        self.config.get_or_init(|| ConfigV1 {
            // Each fragment is a RouteV1 this process serialized: it reads back.
            routes: self
                .order
                .iter()
                .filter_map(|i| serde_json::from_str::<RouteV1>(&self.route(*i).json).ok())
                .collect(),
            ..self.head.clone()
        })
    }

    /// Member states as published.
    pub fn clusters(&self) -> &[ClusterV1] {
        &self.head.clusters
    }

    /// The config as the plugin validated it: the plugin's own availability rules run on it.
    /// Every route was admitted by the plugin's validation when built, so an error here is a
    /// bug, reported rather than hidden.
    pub fn plugin(&self) -> Result<Arc<pcfg::Config>, ConfigError> {
        self.plugin
            .get_or_init(|| finish::validate(self.config().clone()).map(Arc::new))
            .clone()
    }
}

/// A Service port an Ingress backend names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SvcRef {
    pub namespace: String,
    pub name: String,
    pub port: PortRef,
}

impl SvcRef {
    pub fn key(&self) -> SvcKey {
        (self.namespace.clone(), self.name.clone())
    }

    /// The port number upstream names carry: as written, or (by name) the first of `members`'
    /// Service ports of that name. Callers pass members sorted by id, so every name agrees.
    pub fn port_number(&self, members: &[&MemberSnapshot]) -> Option<u16> {
        match &self.port {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(_) => members.iter().find_map(|m| {
                m.index
                    .service_port(&self.key(), &self.port)
                    .map(|p| p.port)
            }),
        }
    }
}

impl std::fmt::Display for SvcRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            PortRef::Number(n) => write!(f, "{}/{}:{n}", self.namespace, self.name),
            PortRef::Name(n) => write!(f, "{}/{}:{n:?}", self.namespace, self.name),
        }
    }
}

/// The fleet's Gateway API objects as derive reads them.
#[derive(Debug, Clone, Copy)]
pub struct GatewayInputs<'a> {
    pub objects: &'a gateway_api::Objects,
    /// Namespace labels (for listeners' `allowedRoutes` selectors).
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The address traffic reaches the gateway at, if known.
    pub address: Option<&'a str>,
}

impl<'a> GatewayInputs<'a> {
    /// Which Gateway API objects are ours and where routes attach.
    pub fn evaluate(&self, members: &[MemberSnapshot]) -> gateway_api::Outcome {
        gateway_api::evaluate(&self.inputs(), &self.backends(members))
    }

    fn inputs(&self) -> gateway_api::Inputs<'_> {
        let o = self.objects;
        gateway_api::Inputs {
            classes: &o.classes,
            gateways: &o.gateways,
            routes: &o.http_routes,
            grants: &o.grants,
            namespaces: self.namespaces,
            address: self.address,
        }
    }

    fn backends<'m>(&self, members: &'m [MemberSnapshot]) -> gateway_api::FleetBackends<'m>
    where
        'a: 'm,
    {
        gateway_api::FleetBackends {
            members,
            imports: &self.objects.service_imports,
        }
    }
}

/// Members and options as every stage sees them.
pub(crate) struct Ctx<'a> {
    /// Sorted by id, unique.
    pub members: Vec<&'a MemberSnapshot>,
    pub member_ids: BTreeSet<&'a str>,
    pub opts: &'a DeriveOptions,
}

/// Derive the plugin config with no memory of earlier derivations (offline `render`).
pub fn derive_config(
    ingresses: &[Ingress],
    members: &[MemberSnapshot],
    opts: &DeriveOptions,
) -> Result<Derived, DeriveError> {
    let ingresses: Vec<Arc<Ingress>> = ingresses.iter().cloned().map(Arc::new).collect();
    Deriver::default().derive(&ingresses, members, opts)
}

/// One version of an Ingress and what it means for derive.
type Version = (Arc<Ingress>, Arc<ingress::Accepted>);

/// Which Services changed since the last derivation (in any member).
pub(crate) enum Dirty {
    All,
    /// Hashes of the changed Services ([`crate::endpoints::svc_hash`]).
    Some(HashSet<u64>),
}

impl Dirty {
    pub fn touches(&self, services: &[u64]) -> bool {
        match self {
            Dirty::All => true,
            Dirty::Some(set) => services.iter().any(|s| set.contains(s)),
        }
    }
}

/// What the last derivation planned, reused while its Ingresses (the same objects) and members
/// (the same set and contacts) stay: then a change of endpoints rebuilds only the base
/// Ingresses that read the changed Services.
struct Prepared {
    inputs: Vec<Arc<Ingress>>,
    accepted: Vec<Arc<ingress::Accepted>>,
    /// Problems of reading and planning (building adds its own per base).
    problems: Vec<Problem>,
    kept: Vec<claims::Kept>,
    built: Vec<Arc<routes::BuiltBase>>,
    /// Service (hash) -> the planned bases that read it.
    users: HashMap<u64, Vec<usize>>,
}

impl Prepared {
    fn serves(&self, ingresses: &[Arc<Ingress>]) -> bool {
        self.inputs.len() == ingresses.len()
            && self
                .inputs
                .iter()
                .zip(ingresses)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// Derivation with memory, so that a change costs what it touches:
/// - each Ingress version is read once (remembered while the object is unchanged);
/// - the routes of a base Ingress are rebuilt only when it, its canaries, or a Service they use
///   (in any member, per the members' change logs) changed;
/// - the last good version of every Ingress is served while its current version is invalid
///   (a typo must not become an outage).
#[derive(Default)]
pub struct Deriver {
    prepared: Option<Prepared>,
    current: HashMap<IngressKey, Version>,
    last_good: HashMap<IngressKey, Version>,
    routes: routes::Cache,
    gateway: httproute::Cache,
    /// Per member: contact and index cursor at the last derivation.
    seen: BTreeMap<String, (Contact, (u64, u64))>,
    /// The member ids and options the memory was built for.
    sig: u64,
}

impl std::fmt::Debug for Deriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deriver")
            .field("ingresses", &self.current.len())
            .field("last_good", &self.last_good.len())
            .finish()
    }
}

impl Deriver {
    pub fn derive(
        &mut self,
        ingresses: &[Arc<Ingress>],
        members: &[MemberSnapshot],
        opts: &DeriveOptions,
    ) -> Result<Derived, DeriveError> {
        self.derive_with(ingresses, None, members, opts)
    }

    /// [`Deriver::derive`] with the fleet's Gateway API objects too: HTTPRoute routes follow
    /// the Ingress routes (an Ingress wins a tie), and the result carries their evaluation.
    pub fn derive_with(
        &mut self,
        ingresses: &[Arc<Ingress>],
        gateway: Option<GatewayInputs<'_>>,
        members: &[MemberSnapshot],
        opts: &DeriveOptions,
    ) -> Result<Derived, DeriveError> {
        let mut sorted: Vec<&MemberSnapshot> = members.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted.dedup_by(|a, b| a.id == b.id);
        if sorted.is_empty() {
            return Err(DeriveError::NoMembers);
        }
        let ctx = Ctx {
            member_ids: sorted.iter().map(|m| m.id.as_str()).collect(),
            members: sorted,
            opts,
        };
        let dirty = self.what_changed(&ctx);
        let prepared = match (self.prepared.take(), &dirty) {
            (Some(p), Dirty::Some(changed)) if p.serves(ingresses) => {
                self.rebuild_users(p, changed, &ctx)
            }
            _ => self.prepare(ingresses, &ctx, &dirty),
        };
        let mut built = prepared.built.clone();
        let outcome = gateway.map(|g| {
            let memory = (&dirty, &mut self.gateway);
            let ingress = &prepared.built;
            let (mut outcome, t) = httproute::translate(&g, members, &ctx, ingress, memory);
            gateway_api::mark_unsupported(&mut outcome, &t.invalid);
            built.extend(t.built);
            outcome
        });
        let derived = finish::finish(&built, &ctx, prepared.problems.clone());
        self.prepared = Some(prepared);
        derived.map(|mut d| {
            d.gateway_api = outcome;
            d
        })
    }

    /// Read, plan and build (reusing what the caches still hold).
    fn prepare(&mut self, ingresses: &[Arc<Ingress>], ctx: &Ctx<'_>, dirty: &Dirty) -> Prepared {
        let mut problems = Vec::new();
        let accepted = self.parse_all(ingresses, ctx, &mut problems);
        let plan = claims::plan(&accepted, &mut problems);
        let built = self.routes.build_all(&plan, ctx, dirty);
        let mut users: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, b) in plan.iter().enumerate() {
            for s in routes::services_of(b) {
                users.entry(s).or_default().push(i);
            }
        }
        let kept = plan.iter().map(claims::BasePlan::keep).collect();
        Prepared {
            inputs: ingresses.to_vec(),
            accepted,
            problems,
            kept,
            built,
            users,
        }
    }

    /// The same plan; rebuild the bases that read a changed Service.
    fn rebuild_users(
        &mut self,
        mut p: Prepared,
        changed: &HashSet<u64>,
        ctx: &Ctx<'_>,
    ) -> Prepared {
        let todo: BTreeSet<usize> = changed
            .iter()
            .filter_map(|s| p.users.get(s))
            .flatten()
            .copied()
            .collect();
        for i in todo {
            if let Some(plan) = claims::restore(&p.kept[i], &p.accepted) {
                p.built[i] = self.routes.rebuild(&plan, ctx);
            }
        }
        p
    }

    /// Compare members with the last derivation: a new member set or options forget
    /// everything; a contact change dirties everything; otherwise each member's change log
    /// names the Services that changed.
    fn what_changed(&mut self, ctx: &Ctx<'_>) -> Dirty {
        let sig = crate::hashing::hash_of(&(&ctx.member_ids, format!("{:?}", ctx.opts)));
        let mut dirty = Dirty::Some(HashSet::new());
        if sig != self.sig {
            self.sig = sig;
            self.current.clear();
            self.routes = routes::Cache::default();
            self.gateway = httproute::Cache::default();
            for (o, a) in self.last_good.values_mut() {
                *a = Arc::new(ingress::parse(o, ctx).into_accepted());
            }
            dirty = Dirty::All;
        }
        let seen = std::mem::take(&mut self.seen);
        for m in &ctx.members {
            let changed = match seen.get(&m.id) {
                Some((contact, cursor)) if *contact == m.contact => m
                    .index
                    .changed_since(*cursor)
                    .map(|c| c.collect::<Vec<_>>()),
                _ => None,
            };
            match (&mut dirty, changed) {
                (Dirty::Some(set), Some(keys)) => set.extend(keys),
                (d, None) => *d = Dirty::All,
                (Dirty::All, Some(_)) => {}
            }
            self.seen
                .insert(m.id.clone(), (m.contact, m.index.cursor()));
        }
        dirty
    }

    /// Our Ingresses, oldest first (the oldest wins a host/path conflict, as in ingress-nginx),
    /// each as its current version or, where that is invalid, its last good one.
    fn parse_all(
        &mut self,
        ingresses: &[Arc<Ingress>],
        ctx: &Ctx<'_>,
        problems: &mut Vec<Problem>,
    ) -> Vec<Arc<ingress::Accepted>> {
        let mut ours: Vec<&Arc<Ingress>> =
            ingresses.iter().filter(|i| is_ours(i, ctx.opts)).collect();
        ours.sort_by_cached_key(|i| (i.metadata.creation_timestamp.clone(), ingress::key_of(i)));
        let mut current = HashMap::with_capacity(ours.len());
        let mut out = Vec::with_capacity(ours.len());
        for ing in ours {
            let key = ingress::key_of(ing);
            let acc = match self.current.remove(&key) {
                Some((o, a)) if Arc::ptr_eq(&o, ing) => a,
                _ => Arc::new(ingress::parse(ing, ctx).into_accepted()),
            };
            current.insert(key.clone(), (Arc::clone(ing), Arc::clone(&acc)));
            if acc.clean {
                problems.extend(acc.problems.iter().cloned());
                self.last_good
                    .insert(key, (Arc::clone(ing), Arc::clone(&acc)));
                out.push(acc);
                continue;
            }
            let good = self
                .last_good
                .get(&key)
                .filter(|(o, a)| o.metadata.uid == ing.metadata.uid && a.clean);
            match good {
                Some((_, good)) => {
                    problems.push(Problem::new(
                        &key,
                        Severity::Stale,
                        format!(
                            "{}; serving its last good version (generation {})",
                            acc.errors.join("; "),
                            good.generation.map_or("?".to_string(), |g| g.to_string())
                        ),
                    ));
                    out.push(Arc::clone(good));
                }
                None => {
                    problems.extend(acc.problems.iter().cloned());
                    out.push(acc);
                }
            }
        }
        self.last_good.retain(|k, _| current.contains_key(k));
        self.current = current;
        out
    }
}

#[cfg(test)]
mod tests;
