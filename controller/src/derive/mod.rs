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
mod ingress;
mod routes;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use fleetgate_plugin::config::{self as pcfg, ConfigError, ConfigV1};
use k8s_openapi::api::networking::v1::Ingress;
use thiserror::Error;

use crate::endpoints::{MemberIndex, SvcKey};
pub use crate::endpoints::{PortRef, SERVICE_NAME_LABEL};
pub use crate::settings::PluginSettings;
pub use ingress::{is_ours, LEGACY_CLASS_ANNOTATION};
pub use routes::render_template;

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
    #[error("no usable Ingress of class {0:?}: nothing to route")]
    NoRoutes(String),
    #[error("derived config rejected by the plugin: {0}")]
    Invalid(#[source] ConfigError),
    #[error("cannot serialize config: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which Ingresses a route came from (for events and problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOrigin {
    pub route: String,
    pub base: IngressKey,
    pub canaries: Vec<IngressKey>,
    /// Services (base, canaries, fallback) the route sends traffic to.
    pub services: Vec<SvcRef>,
}

/// The result of a derivation.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The config, revision set.
    pub config: ConfigV1,
    /// The same config as the plugin validated it (the plugin's availability rules run on it).
    pub plugin: Arc<pcfg::Config>,
    /// Compact JSON of `config` (what is served and hashed).
    pub json: String,
    pub revision: String,
    pub problems: Vec<Problem>,
    /// Per route (same order as `config.routes`): where it came from.
    pub origins: Vec<RouteOrigin>,
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
}

impl std::fmt::Display for SvcRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            PortRef::Number(n) => write!(f, "{}/{}:{n}", self.namespace, self.name),
            PortRef::Name(n) => write!(f, "{}/{}:{n:?}", self.namespace, self.name),
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

/// Derivation with memory: the last good version of every Ingress, served while its current
/// version is invalid (a typo must not become an outage).
#[derive(Debug, Default)]
pub struct Deriver {
    last_good: HashMap<IngressKey, Arc<Ingress>>,
}

impl Deriver {
    pub fn derive(
        &mut self,
        ingresses: &[Arc<Ingress>],
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
        let mut problems = Vec::new();
        let parsed = self.parse_all(ingresses, &ctx, &mut problems);
        let plan = claims::plan(&parsed, &mut problems);
        let built = routes::build_all(&plan, &ctx, &mut problems);
        finish::finish(built, &ctx, problems)
    }

    /// Parse our Ingresses, oldest first (the oldest wins a host/path conflict, as in
    /// ingress-nginx), falling back to each one's last good version where it is invalid now.
    fn parse_all(
        &mut self,
        ingresses: &[Arc<Ingress>],
        ctx: &Ctx<'_>,
        problems: &mut Vec<Problem>,
    ) -> Vec<ingress::Parsed> {
        let mut ours: Vec<&Arc<Ingress>> =
            ingresses.iter().filter(|i| is_ours(i, ctx.opts)).collect();
        ours.sort_by_cached_key(|i| (i.metadata.creation_timestamp.clone(), ingress::key_of(i)));
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(ours.len());
        for ing in ours {
            let current = ingress::parse(ing, ctx);
            seen.insert(current.parsed.key.clone());
            if current.is_clean() {
                self.last_good
                    .insert(current.parsed.key.clone(), Arc::clone(ing));
                out.push(current.accept(problems));
                continue;
            }
            match self.last_good_of(ing, ctx) {
                Some(good) => {
                    problems.push(Problem::new(
                        &current.parsed.key,
                        Severity::Stale,
                        format!(
                            "{}; serving its last good version (generation {})",
                            current.errors().join("; "),
                            good.generation.map_or("?".to_string(), |g| g.to_string())
                        ),
                    ));
                    out.push(good.parsed);
                }
                None => out.push(current.accept(problems)),
            }
        }
        self.last_good.retain(|k, _| seen.contains(k));
        out
    }

    /// The remembered good version of this Ingress (same object, an older generation), if it
    /// is still good against today's members.
    fn last_good_of(&self, ing: &Ingress, ctx: &Ctx<'_>) -> Option<ingress::Parse> {
        let good = self.last_good.get(&ingress::key_of(ing))?;
        if good.metadata.uid != ing.metadata.uid {
            return None;
        }
        Some(ingress::parse(good, ctx)).filter(ingress::Parse::is_clean)
    }
}

#[cfg(test)]
mod tests;
