//! The pure heart of the controller: `(Ingresses, members, EndpointSlice snapshots) -> ConfigV1`.
//!
//! No I/O and no clocks: the caller decides each member's control-plane contact ([`Contact`],
//! from [`crate::health`]) and passes the objects it has. The output is built from sorted inputs
//! (members by id, routes by name) so the JSON is byte-stable and the revision (a SHA-256 of the
//! JSON without the revision) only changes when the content does.
//!
//! An Ingress that cannot be used (bad annotation, unsupported backend, a host/path another
//! Ingress already routes, a cluster nobody knows) is skipped and reported as a [`Problem`]; all
//! other Ingresses keep working. Every config is checked with the plugin's own
//! [`fleetgate_plugin::config::parse`] before it is returned; a route the plugin would reject is
//! dropped and its Ingress reported, so one Ingress can never make the whole config invalid.

use std::collections::{BTreeMap, BTreeSet};

use fleetgate_plugin::config::{
    self as pcfg, BackendV1, CanaryV1, ClusterState, ClusterV1, ConditionV1, ConfigError, ConfigV1,
    FailbackV1, MatchV1, MirrorV1, Mode, PassiveHealthV1, PathKind, PathV1, RouteV1, StickyV1,
    WhenUnavailable,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::annotations::{self, CanaryMatch, IngressAnnotations, ModeAnno};

/// EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Legacy class annotation.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Default Envoy cluster name of a Service in one member cluster (Istio subset = member).
pub const DEFAULT_UPSTREAM_TEMPLATE: &str =
    "outbound|{port}|{cluster}|{service}.{namespace}.svc.cluster.local";
/// Default mirror upstream: the Service across all members (Istio cluster without subset).
pub const DEFAULT_MIRROR_TEMPLATE: &str =
    "outbound|{port}||{service}.{namespace}.svc.cluster.local";

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
    /// The member's EndpointSlices (last known when `contact` is `Lost`).
    pub endpoint_slices: Vec<EndpointSlice>,
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
    pub decision_header: Option<String>,
}

impl Default for DeriveOptions {
    fn default() -> Self {
        DeriveOptions {
            ingress_class: "fleetgate".to_string(),
            class_is_default: false,
            upstream_template: DEFAULT_UPSTREAM_TEMPLATE.to_string(),
            mirror_template: DEFAULT_MIRROR_TEMPLATE.to_string(),
            decision_header: None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Part of the Ingress was ignored; the rest is served.
    Warning,
    /// The Ingress was skipped entirely.
    Rejected,
}

/// Something wrong with one Ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub ingress: IngressKey,
    pub severity: Severity,
    pub message: String,
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
    /// Services (base and canaries) the route sends traffic to.
    pub services: Vec<SvcRef>,
}

/// The result of a derivation.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The config, revision set, already validated by the plugin's parser.
    pub config: ConfigV1,
    /// Compact JSON of `config` (what is served and hashed).
    pub json: String,
    pub revision: String,
    pub problems: Vec<Problem>,
    /// Per route (same order as `config.routes`): where it came from.
    pub origins: Vec<RouteOrigin>,
}

/// The Ingress port a backend names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A Service port an Ingress backend names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SvcRef {
    pub namespace: String,
    pub name: String,
    pub port: PortRef,
}

/// One (host, path) of an Ingress.
#[derive(Debug, Clone)]
struct Entry {
    host: Option<String>,
    kind: PathKind,
    path: String,
    svc: SvcRef,
}

/// (host, path kind rank, path): the Higress rule key canaries pair on.
type RuleKey = (Option<String>, u8, String);

fn rule_key(e: &Entry) -> RuleKey {
    (e.host.clone(), kind_rank(e.kind), e.path.clone())
}

fn kind_rank(k: PathKind) -> u8 {
    match k {
        PathKind::Exact => 0,
        PathKind::Prefix => 1,
    }
}

/// A parsed Ingress of our class.
struct Parsed {
    key: IngressKey,
    annos: IngressAnnotations,
    entries: Vec<Entry>,
}

/// Is this Ingress ours?
pub fn is_ours(ing: &Ingress, opts: &DeriveOptions) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match class {
        Some(c) => c == opts.ingress_class,
        None => opts.class_is_default,
    }
}

fn key_of(ing: &Ingress) -> IngressKey {
    IngressKey {
        namespace: ing
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: ing.metadata.name.clone().unwrap_or_default(),
    }
}

/// Derive the plugin config.
pub fn derive_config(
    ingresses: &[Ingress],
    members: &[MemberSnapshot],
    opts: &DeriveOptions,
) -> Result<Derived, DeriveError> {
    let mut members: Vec<&MemberSnapshot> = members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    if members.is_empty() {
        return Err(DeriveError::NoMembers);
    }
    let member_ids: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let mut problems = Vec::new();

    // Oldest Ingress first: it wins a host/path conflict (as ingress-nginx does).
    let mut ours: Vec<&Ingress> = ingresses.iter().filter(|i| is_ours(i, opts)).collect();
    ours.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, key_of(a))
            .cmp(&(&b.metadata.creation_timestamp, key_of(b)))
    });

    let mut bases: Vec<Parsed> = Vec::new();
    let mut canaries: Vec<Parsed> = Vec::new();
    for ing in ours {
        let key = key_of(ing);
        match parse_ingress(ing, &key, &member_ids) {
            Ok(p) if p.annos.canary.is_some() => canaries.push(p),
            Ok(p) => bases.push(p),
            Err(message) => problems.push(Problem {
                ingress: key,
                severity: Severity::Rejected,
                message,
            }),
        }
    }

    // Claim host/paths, oldest first.
    let mut claimed: BTreeMap<RuleKey, IngressKey> = BTreeMap::new();
    let mut kept: Vec<Parsed> = Vec::new();
    for p in bases {
        let clash = p.entries.iter().find_map(|e| {
            claimed
                .get(&rule_key(e))
                .filter(|owner| **owner != p.key)
                .map(|owner| (e, owner))
        });
        if let Some((e, owner)) = clash {
            problems.push(Problem {
                ingress: p.key.clone(),
                severity: Severity::Rejected,
                message: format!(
                    "host {:?} path {:?} ({:?}) is already routed by Ingress {owner}",
                    e.host.as_deref().unwrap_or("*"),
                    e.path,
                    e.kind
                ),
            });
            continue;
        }
        let mut dup = false;
        let mut mine = BTreeSet::new();
        for e in &p.entries {
            dup |= !mine.insert(rule_key(e));
        }
        if dup {
            problems.push(Problem {
                ingress: p.key.clone(),
                severity: Severity::Rejected,
                message: "the same host and path appear twice".to_string(),
            });
            continue;
        }
        for e in &p.entries {
            claimed.insert(rule_key(e), p.key.clone());
        }
        kept.push(p);
    }

    // Attach canaries to the base entry of the same host + path + pathType.
    let mut attached: BTreeMap<(IngressKey, usize), Vec<(&Parsed, &Entry)>> = BTreeMap::new();
    for c in &canaries {
        let mut any = false;
        for e in &c.entries {
            let rk = rule_key(e);
            let base = claimed.get(&rk).and_then(|owner| {
                let b = kept.iter().find(|b| b.key == *owner)?;
                let idx = b
                    .entries
                    .iter()
                    .position(|be| be.host == e.host && be.kind == e.kind && be.path == e.path)?;
                Some((b.key.clone(), idx))
            });
            match base {
                Some(k) => {
                    any = true;
                    attached.entry(k).or_default().push((c, e));
                }
                None => problems.push(Problem {
                    ingress: c.key.clone(),
                    severity: Severity::Warning,
                    message: format!(
                        "canary host {:?} path {:?} ({:?}) has no base Ingress; ignored",
                        e.host.as_deref().unwrap_or("*"),
                        e.path,
                        e.kind
                    ),
                }),
            }
        }
        let _ = any;
    }

    // Build routes.
    let mut built: Vec<(RouteV1, RouteOrigin)> = Vec::new();
    for b in &kept {
        if b.annos.default_backend.is_some() {
            problems.push(Problem {
                ingress: b.key.clone(),
                severity: Severity::Warning,
                message: "default-backend: config schema v1 has no fallback service; ignored"
                    .to_string(),
            });
        }
        let mut routes: Vec<(RuleKey, RouteV1, Vec<IngressKey>, Vec<SvcRef>)> = Vec::new();
        let mut failed = None;
        for (i, e) in b.entries.iter().enumerate() {
            let cs = attached
                .get(&(b.key.clone(), i))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match build_route(b, e, cs, &members, opts) {
                Ok(r) => routes.push((
                    rule_key(e),
                    r,
                    cs.iter().map(|(c, _)| c.key.clone()).collect(),
                    std::iter::once(e.svc.clone())
                        .chain(cs.iter().map(|(_, ce)| ce.svc.clone()))
                        .collect(),
                )),
                Err(m) => {
                    failed = Some(m);
                    break;
                }
            }
        }
        if let Some(message) = failed {
            problems.push(Problem {
                ingress: b.key.clone(),
                severity: Severity::Rejected,
                message,
            });
            continue;
        }
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        // Merge routes of this Ingress that differ only in their paths.
        let mut merged: Vec<(RouteV1, Vec<IngressKey>, Vec<SvcRef>)> = Vec::new();
        for (_, r, cks, svcs) in routes {
            if let Some((last, lcks, lsvcs)) = merged.last_mut() {
                let mut probe = r.clone();
                probe.paths = last.paths.clone();
                if probe == *last {
                    last.paths.extend(r.paths);
                    for c in cks {
                        if !lcks.contains(&c) {
                            lcks.push(c);
                        }
                    }
                    for s in svcs {
                        if !lsvcs.contains(&s) {
                            lsvcs.push(s);
                        }
                    }
                    continue;
                }
            }
            merged.push((r, cks, svcs));
        }
        let n = merged.len();
        for (i, (mut r, cks, services)) in merged.into_iter().enumerate() {
            r.name = if n == 1 {
                b.key.to_string()
            } else {
                format!("{}#{}", b.key, i + 1)
            };
            let origin = RouteOrigin {
                route: r.name.clone(),
                base: b.key.clone(),
                canaries: cks,
                services,
            };
            built.push((r, origin));
        }
    }
    built.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    finish(built, &members, opts, problems)
}

/// Cluster states, revision, and the plugin's validation (dropping routes it rejects).
fn finish(
    mut built: Vec<(RouteV1, RouteOrigin)>,
    members: &[&MemberSnapshot],
    opts: &DeriveOptions,
    mut problems: Vec<Problem>,
) -> Result<Derived, DeriveError> {
    loop {
        if built.is_empty() {
            return Err(DeriveError::NoRoutes(opts.ingress_class.clone()));
        }
        let routes: Vec<RouteV1> = built.iter().map(|(r, _)| r.clone()).collect();
        let clusters = cluster_states(&built, members);
        let mut config = ConfigV1 {
            version: 1,
            revision: None,
            cluster_header: pcfg::default_cluster_header(),
            mirror_header: pcfg::default_mirror_header(),
            decision_header: opts.decision_header.clone(),
            random_seed: None,
            clusters,
            passive_health: PassiveHealthV1::default(),
            routes,
            config_source: None,
        };
        let unrevised = serde_json::to_vec(&config)?;
        let revision = hex16(&Sha256::digest(&unrevised));
        config.revision = Some(revision.clone());
        let json = serde_json::to_string(&config)?;
        match pcfg::parse(json.as_bytes()) {
            Ok(_) => {
                problems.sort();
                problems.dedup();
                let origins = built.into_iter().map(|(_, o)| o).collect();
                return Ok(Derived {
                    config,
                    json,
                    revision,
                    problems,
                    origins,
                });
            }
            Err(e) => {
                let Some(i) = route_index(&e.path).filter(|i| *i < built.len()) else {
                    return Err(DeriveError::Invalid(e));
                };
                let (_, origin) = built.remove(i);
                for k in std::iter::once(origin.base).chain(origin.canaries) {
                    problems.push(Problem {
                        ingress: k,
                        severity: Severity::Rejected,
                        message: format!("the plugin rejects the route: {}", e.reason),
                    });
                }
            }
        }
    }
}

/// `routes[3].backends[0]` -> 3.
fn route_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("routes[")?;
    rest.split(']').next()?.parse().ok()
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Ready and not-ready endpoints of one Service port in one member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCount {
    pub ready: u32,
    pub not_ready: u32,
}

/// Count endpoints of `namespace/service` serving `port`. Ready = `conditions.ready` not false
/// (nil counts as ready) and not terminating; endpoints are de-duplicated by address.
fn count_endpoints(slices: &[EndpointSlice], svc: &SvcRef) -> EndpointCount {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for s in slices {
        if s.metadata.namespace.as_deref() != Some(svc.namespace.as_str()) {
            continue;
        }
        let owner = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if owner.map(String::as_str) != Some(svc.name.as_str()) {
            continue;
        }
        if !slice_serves(s, &svc.port) {
            continue;
        }
        for ep in &s.endpoints {
            let c = ep.conditions.as_ref();
            let is_ready = c.and_then(|c| c.ready) != Some(false)
                && c.and_then(|c| c.terminating) != Some(true);
            let terminating = c.and_then(|c| c.terminating) == Some(true);
            let addr = ep.addresses.join(",");
            if is_ready {
                ready.insert(addr);
            } else if !terminating {
                // A terminating endpoint is a rollout or scale-down, not a sign of trouble.
                not_ready.insert(addr);
            }
        }
    }
    let not_ready: BTreeSet<_> = not_ready.difference(&ready).cloned().collect();
    EndpointCount {
        ready: ready.len() as u32,
        not_ready: not_ready.len() as u32,
    }
}

/// Does this slice carry the port the Ingress names? By name: a slice port of that name. By
/// number: a slice port with that number, or the slice's only port (a single-port Service,
/// whose target port may differ from the Service port the Ingress names).
fn slice_serves(s: &EndpointSlice, port: &PortRef) -> bool {
    let ports = s.ports.as_deref().unwrap_or(&[]);
    match port {
        PortRef::Name(n) => ports.iter().any(|p| p.name.as_deref() == Some(n.as_str())),
        PortRef::Number(n) => {
            ports.len() == 1 || ports.iter().any(|p| p.port == Some(i32::from(*n)))
        }
    }
}

/// Resolve the number the upstream name uses. Named ports take the EndpointSlice port of that
/// name from the first member (by id) that has one.
fn port_number(svc: &SvcRef, members: &[&MemberSnapshot]) -> Option<u16> {
    match &svc.port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => members.iter().find_map(|m| {
            m.endpoint_slices.iter().find_map(|s| {
                let owner = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
                if owner != &svc.name || s.metadata.namespace.as_deref() != Some(&svc.namespace) {
                    return None;
                }
                s.ports.as_ref()?.iter().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str()))
                        .then_some(p.port)
                        .flatten()
                        .and_then(|n| u16::try_from(n).ok())
                })
            })
        }),
    }
}

fn render_template(t: &str, port: u16, cluster: &str, svc: &str, ns: &str) -> String {
    t.replace("{port}", &port.to_string())
        .replace("{cluster}", cluster)
        .replace("{service}", svc)
        .replace("{namespace}", ns)
}

/// One backend per member (or only `only`), ready counts from the member's slices.
fn backends(
    svc: &SvcRef,
    members: &[&MemberSnapshot],
    only: Option<&str>,
    opts: &DeriveOptions,
) -> Result<Vec<BackendV1>, String> {
    let port = port_number(svc, members).ok_or_else(|| {
        format!(
            "service {}/{} port {:?} cannot be resolved to a number (no EndpointSlice names it); \
             name the port by number",
            svc.namespace, svc.name, svc.port
        )
    })?;
    Ok(members
        .iter()
        .filter(|m| only.is_none_or(|o| o == m.id))
        .map(|m| BackendV1 {
            cluster: m.id.clone(),
            upstream: render_template(
                &opts.upstream_template,
                port,
                &m.id,
                &svc.name,
                &svc.namespace,
            ),
            ready: match m.contact {
                Contact::Never => None,
                Contact::Live | Contact::Lost => {
                    Some(count_endpoints(&m.endpoint_slices, svc).ready)
                }
            },
            weight: None,
        })
        .collect())
}

fn build_route(
    b: &Parsed,
    e: &Entry,
    canaries: &[(&Parsed, &Entry)],
    members: &[&MemberSnapshot],
    opts: &DeriveOptions,
) -> Result<RouteV1, String> {
    let a = &b.annos;
    let mut base = backends(&e.svc, members, None, opts)?;
    if let Some(ws) = &a.cluster_weights {
        for be in &mut base {
            be.weight = Some(
                ws.iter()
                    .find(|(c, _)| *c == be.cluster)
                    .map_or(0, |(_, w)| *w),
            );
        }
    }
    let (mode, order) = match (a.mode, &a.cluster_order, &a.cluster) {
        (Some(ModeAnno::ActiveActive) | None, None, None) => (Mode::ActiveActive, Vec::new()),
        (Some(ModeAnno::ActiveActive), Some(_), _) => {
            return Err("fleetgate.io/cluster-order needs fleetgate.io/mode: active-standby".into())
        }
        (Some(ModeAnno::ActiveActive), None, Some(_)) => {
            return Err(
                "fleetgate.io/cluster on a base Ingress means active-standby; it conflicts with mode active-active"
                    .into(),
            )
        }
        (_, Some(_), Some(_)) => {
            return Err("set fleetgate.io/cluster-order or fleetgate.io/cluster, not both".into())
        }
        (_, Some(o), None) => (Mode::ActiveStandby, o.clone()),
        // MSE "subset pinned to the primary, empty subset -> all pods": primary first, then the
        // other members by id.
        (_, None, Some(c)) => {
            let mut o = vec![c.clone()];
            o.extend(members.iter().filter(|m| m.id != *c).map(|m| m.id.clone()));
            (Mode::ActiveStandby, o)
        }
        (Some(ModeAnno::ActiveStandby), None, None) => {
            return Err(
                "fleetgate.io/mode active-standby needs fleetgate.io/cluster-order (primary first)"
                    .into(),
            )
        }
    };
    let mut failback = FailbackV1::default();
    if let Some(h) = a.failback_hold_seconds {
        failback.hold_seconds = h;
    }
    if let Some(r) = a.failback_ramp_seconds {
        failback.ramp_seconds = r;
    }
    let mirror = match &a.mirror {
        Some((target, percent)) => {
            let port = match target.port {
                Some(p) => p,
                None => port_number(&e.svc, members).unwrap_or(80),
            };
            Some(MirrorV1 {
                upstream: render_template(
                    &opts.mirror_template,
                    port,
                    "",
                    &target.name,
                    &target.namespace,
                ),
                percent: *percent,
            })
        }
        None => None,
    };

    // Canaries, oldest first (their order is their precedence, and the first weighted canary's
    // total is the route's, as in Higress).
    let mut cv = Vec::new();
    let mut total = None;
    for (c, ce) in canaries {
        let when_weight = match c.annos.canary.as_ref() {
            Some(CanaryMatch::HeaderAlways(h)) => (vec![cond_header(h, MatchV1::Always)], None),
            Some(CanaryMatch::HeaderValue { header, value }) => (
                vec![cond_header(
                    header,
                    MatchV1::Regex(format!("always|{value}")),
                )],
                None,
            ),
            Some(CanaryMatch::HeaderPattern { header, pattern }) => (
                vec![cond_header(
                    header,
                    MatchV1::Regex(format!(".*{pattern}.*")),
                )],
                None,
            ),
            Some(CanaryMatch::Cookie(name)) => (
                vec![ConditionV1 {
                    header: None,
                    cookie: Some(name.clone()),
                    query: None,
                    matcher: MatchV1::Always,
                }],
                None,
            ),
            Some(CanaryMatch::Weight { weight, total: t }) => {
                if total.is_none() {
                    total = *t;
                }
                (Vec::new(), Some(*weight))
            }
            None => continue,
        };
        let cb = backends(&ce.svc, members, c.annos.cluster.as_deref(), opts)?;
        cv.push(CanaryV1 {
            name: c.key.to_string(),
            when: when_weight.0,
            weight: when_weight.1,
            backends: cb,
        });
    }

    Ok(RouteV1 {
        name: String::new(),
        hosts: e.host.iter().cloned().collect(),
        paths: vec![PathV1 {
            kind: e.kind,
            path: e.path.clone(),
        }],
        mode,
        order,
        min_healthy: a.min_healthy.unwrap_or(1),
        failback,
        backends: base,
        pins: Vec::new(),
        route_by_header: a.route_by_header.clone(),
        canaries: cv,
        canary_weight_total: total,
        fallback: None,
        mirror,
        sticky: a.sticky.as_ref().map(|(cookie, age)| StickyV1 {
            cookie: cookie.clone(),
            max_age_seconds: age.unwrap_or(3600),
        }),
        when_unavailable: WhenUnavailable::Reject,
    })
}

fn cond_header(h: &str, m: MatchV1) -> ConditionV1 {
    ConditionV1 {
        header: Some(h.to_string()),
        cookie: None,
        query: None,
        matcher: m,
    }
}

/// A member's state: `unknown` without control-plane contact; otherwise `down` only on real
/// evidence (every Service the routes use has zero ready endpoints there), `degraded` when some
/// Service has none or some endpoints are not ready, else `healthy`.
fn cluster_states(built: &[(RouteV1, RouteOrigin)], members: &[&MemberSnapshot]) -> Vec<ClusterV1> {
    members
        .iter()
        .map(|m| {
            let state = match m.contact {
                Contact::Lost | Contact::Never => ClusterState::Unknown,
                Contact::Live => {
                    let counts: Vec<u32> = built
                        .iter()
                        .flat_map(|(r, _)| {
                            r.backends
                                .iter()
                                .chain(r.canaries.iter().flat_map(|c| c.backends.iter()))
                        })
                        .filter(|b| b.cluster == m.id)
                        .filter_map(|b| b.ready)
                        .collect();
                    let not_ready = built
                        .iter()
                        .flat_map(|(_, o)| o.services.iter())
                        .any(|svc| count_endpoints(&m.endpoint_slices, svc).not_ready > 0);
                    if counts.is_empty() {
                        ClusterState::Healthy
                    } else if counts.iter().all(|c| *c == 0) {
                        ClusterState::Down
                    } else if counts.contains(&0) || not_ready {
                        ClusterState::Degraded
                    } else {
                        ClusterState::Healthy
                    }
                }
            };
            ClusterV1 {
                id: m.id.clone(),
                zone: m.zone.clone(),
                state,
            }
        })
        .collect()
}

/// Parse one Ingress of our class into entries; a message on anything unusable.
fn parse_ingress(
    ing: &Ingress,
    key: &IngressKey,
    member_ids: &BTreeSet<&str>,
) -> Result<Parsed, String> {
    let empty = BTreeMap::new();
    let annos = annotations::parse(
        &key.namespace,
        ing.metadata.annotations.as_ref().unwrap_or(&empty),
    )
    .map_err(|e| e.to_string())?;
    let unknown = |id: &str, what: &str| -> Result<(), String> {
        if member_ids.contains(id) {
            Ok(())
        } else {
            Err(format!(
                "{what} names cluster {id:?}, which is not a member"
            ))
        }
    };
    if let Some(ws) = &annos.cluster_weights {
        for (c, _) in ws {
            unknown(c, "fleetgate.io/cluster-weights")?;
        }
    }
    if let Some(o) = &annos.cluster_order {
        for c in o {
            unknown(c, "fleetgate.io/cluster-order")?;
        }
    }
    if let Some(c) = &annos.cluster {
        unknown(c, "fleetgate.io/cluster")?;
    }

    let spec = ing.spec.as_ref().ok_or("Ingress has no spec")?;
    let mut entries = Vec::new();
    if let Some(db) = &spec.default_backend {
        entries.push(Entry {
            host: None,
            kind: PathKind::Prefix,
            path: "/".to_string(),
            svc: svc_ref(db, &key.namespace).map_err(|m| format!("spec.defaultBackend: {m}"))?,
        });
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule
            .host
            .as_ref()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let Some(http) = &rule.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let kind = match p.path_type.as_str() {
                "Exact" => PathKind::Exact,
                "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                other => return Err(format!("{at}.pathType {other:?} is not supported")),
            };
            let path = p.path.clone().unwrap_or_else(|| "/".to_string());
            if !path.starts_with('/') {
                return Err(format!("{at}.path {path:?} must start with '/'"));
            }
            entries.push(Entry {
                host: host.clone(),
                kind,
                path,
                svc: svc_ref(&p.backend, &key.namespace)
                    .map_err(|m| format!("{at}.backend: {m}"))?,
            });
        }
    }
    if entries.is_empty() {
        return Err("Ingress has no rules with paths and no default backend".to_string());
    }
    Ok(Parsed {
        key: key.clone(),
        annos,
        entries,
    })
}

fn svc_ref(b: &IngressBackend, namespace: &str) -> Result<SvcRef, String> {
    let Some(s) = &b.service else {
        return Err("only service backends are supported (not resource)".to_string());
    };
    let port = match &s.port {
        Some(p) => match (&p.number, &p.name) {
            (Some(n), _) => PortRef::Number(
                u16::try_from(*n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("port {n} is out of range"))?,
            ),
            (None, Some(name)) if !name.is_empty() => PortRef::Name(name.clone()),
            _ => return Err("service port has neither number nor name".to_string()),
        },
        None => return Err("service has no port".to_string()),
    };
    Ok(SvcRef {
        namespace: namespace.to_string(),
        name: s.name.clone(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(
        name: &str,
        ts: &str,
        annos: &[(&str, &str)],
        path: &str,
        svc: &str,
        port: &str,
    ) -> Ingress {
        let port = match port.parse::<u16>() {
            Ok(n) => format!("number: {n}"),
            Err(_) => format!("name: {port}"),
        };
        let annos: String = annos
            .iter()
            .map(|(k, v)| format!("    {k}: {v:?}\n"))
            .collect();
        let y = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  creationTimestamp: \"{ts}\"\n  annotations:\n{annos}    x: y\nspec:\n  ingressClassName: fleetgate\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - path: {path}\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              {port}\n"
        );
        serde_yaml::from_str(&y).unwrap()
    }

    fn slice(svc: &str, ready: &[Option<bool>]) -> EndpointSlice {
        let eps: String = ready
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(r) => format!("- addresses: [10.0.0.{i}]\n  conditions: {{ready: {r}}}\n"),
                None => format!("- addresses: [10.0.0.{i}]\n"),
            })
            .collect();
        let y = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: {svc}-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: {svc}}}\nports:\n- name: http\n  port: 8080\nendpoints:\n{eps}"
        );
        serde_yaml::from_str(&y).unwrap()
    }

    fn member(id: &str, contact: Contact, slices: Vec<EndpointSlice>) -> MemberSnapshot {
        MemberSnapshot {
            id: id.into(),
            zone: None,
            contact,
            endpoint_slices: slices,
        }
    }

    /// The `shop` Ingress with no annotations, backend port `port`.
    fn shop_on_port(port: &str) -> Ingress {
        ingress("shop", "2025-01-01T00:00:00Z", &[], "/", "shop", port)
    }

    fn two_members() -> Vec<MemberSnapshot> {
        vec![
            member(
                "hz-a",
                Contact::Live,
                vec![slice("shop", &[Some(true), None, Some(false)])],
            ),
            member("hz-b", Contact::Live, vec![slice("shop", &[Some(true)])]),
        ]
    }

    #[test]
    fn nil_ready_counts_as_ready_and_false_does_not() {
        let d = derive_config(
            &[shop_on_port("80")],
            &two_members(),
            &DeriveOptions::default(),
        )
        .unwrap();
        let r: Vec<_> = d.config.routes[0]
            .backends
            .iter()
            .map(|b| b.ready)
            .collect();
        assert_eq!(r, vec![Some(2), Some(1)]);
        assert_eq!(d.config.clusters[0].state, ClusterState::Degraded);
        assert_eq!(d.config.clusters[1].state, ClusterState::Healthy);
    }

    #[test]
    fn the_older_ingress_wins_a_host_path_conflict() {
        let ings = [
            ingress("newer", "2025-02-01T00:00:00Z", &[], "/", "shop", "80"),
            ingress("older", "2025-01-01T00:00:00Z", &[], "/", "shop", "80"),
        ];
        let d = derive_config(&ings, &two_members(), &DeriveOptions::default()).unwrap();
        assert_eq!(d.config.routes.len(), 1);
        assert_eq!(d.config.routes[0].name, "default/older");
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].ingress.name, "newer");
        assert_eq!(d.problems[0].severity, Severity::Rejected);
    }

    #[test]
    fn canary_without_a_base_is_ignored_with_a_warning() {
        let ings = [
            ingress("shop", "2025-01-01T00:00:00Z", &[], "/", "shop", "80"),
            ingress(
                "c",
                "2025-01-02T00:00:00Z",
                &[
                    ("higress.io/canary", "true"),
                    ("higress.io/canary-weight", "10"),
                ],
                "/other",
                "shop",
                "80",
            ),
        ];
        let d = derive_config(&ings, &two_members(), &DeriveOptions::default()).unwrap();
        assert!(d.config.routes[0].canaries.is_empty());
        assert_eq!(d.problems[0].severity, Severity::Warning);
    }

    #[test]
    fn lost_member_is_unknown_and_keeps_its_last_endpoints() {
        let mut ms = two_members();
        ms[1].contact = Contact::Lost;
        let shop = [shop_on_port("80")];
        let d = derive_config(&shop, &ms, &DeriveOptions::default()).unwrap();
        assert_eq!(d.config.clusters[1].state, ClusterState::Unknown);
        assert_eq!(d.config.routes[0].backends[1].ready, Some(1));
        ms[1].contact = Contact::Never;
        ms[1].endpoint_slices.clear();
        let d = derive_config(&shop, &ms, &DeriveOptions::default()).unwrap();
        assert_eq!(d.config.clusters[1].state, ClusterState::Unknown);
        assert_eq!(d.config.routes[0].backends[1].ready, None);
    }

    #[test]
    fn named_port_resolves_through_endpoint_slices() {
        let d = derive_config(
            &[shop_on_port("http")],
            &two_members(),
            &DeriveOptions::default(),
        )
        .unwrap();
        assert_eq!(
            d.config.routes[0].backends[0].upstream,
            "outbound|8080|hz-a|shop.default.svc.cluster.local"
        );
        let d = derive_config(
            &[shop_on_port("grpc")],
            &two_members(),
            &DeriveOptions::default(),
        );
        assert!(matches!(d, Err(DeriveError::NoRoutes(_))));
    }

    #[test]
    fn cluster_weights_name_every_member_and_unknown_clusters_reject_the_ingress() {
        let ings = [ingress(
            "shop",
            "2025-01-01T00:00:00Z",
            &[("fleetgate.io/cluster-weights", "hz-a=80")],
            "/",
            "shop",
            "80",
        )];
        let d = derive_config(&ings, &two_members(), &DeriveOptions::default()).unwrap();
        let w: Vec<_> = d.config.routes[0]
            .backends
            .iter()
            .map(|b| b.weight)
            .collect();
        assert_eq!(w, vec![Some(80), Some(0)]);
        let ings = [
            ingress("shop", "2025-01-01T00:00:00Z", &[], "/", "shop", "80"),
            ingress(
                "api",
                "2025-01-01T00:00:00Z",
                &[("fleetgate.io/cluster-order", "hz-a,hz-z")],
                "/api",
                "shop",
                "80",
            ),
        ];
        let d = derive_config(&ings, &two_members(), &DeriveOptions::default()).unwrap();
        assert_eq!(d.config.routes.len(), 1);
        assert!(d.problems[0].message.contains("hz-z"), "{:?}", d.problems);
    }

    #[test]
    fn base_ingress_pinned_to_a_cluster_is_active_standby_with_that_primary() {
        let ings = [ingress(
            "shop",
            "2025-01-01T00:00:00Z",
            &[(
                "mse.ingress.kubernetes.io/subset-labels",
                "topology.istio.io/cluster hz-b",
            )],
            "/",
            "shop",
            "80",
        )];
        let d = derive_config(&ings, &two_members(), &DeriveOptions::default()).unwrap();
        assert_eq!(d.config.routes[0].mode, Mode::ActiveStandby);
        assert_eq!(d.config.routes[0].order, vec!["hz-b", "hz-a"]);
    }

    #[test]
    fn other_classes_are_not_ours() {
        let mut i = ingress("shop", "2025-01-01T00:00:00Z", &[], "/", "shop", "80");
        i.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
        assert!(!is_ours(&i, &DeriveOptions::default()));
        i.spec.as_mut().unwrap().ingress_class_name = None;
        assert!(!is_ours(&i, &DeriveOptions::default()));
        i.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(LEGACY_CLASS_ANNOTATION.into(), "fleetgate".into());
        assert!(is_ours(&i, &DeriveOptions::default()));
    }
}
