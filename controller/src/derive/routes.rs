//! Planned paths -> plugin routes: per member backends with ready counts, the cross-cluster
//! policy, canaries, mirror and sticky settings. A canary or mirror that cannot be built is
//! dropped alone; a base path that cannot be built is dropped alone.

use fleetgate_plugin::config::{
    BackendV1, CanaryV1, ConditionV1, FailbackV1, FallbackV1, MatchV1, MirrorV1, Mode, PathV1,
    RouteV1, StickyV1,
};

use std::collections::HashMap;
use std::sync::Arc;

use super::claims::{BasePlan, CanaryPlan, PathPlan};
use super::finish::{self, admit};
use super::ingress::{Accepted, RuleKey};
use super::{Contact, Ctx, Dirty, IngressKey, PortRef, Problem, RouteOrigin, Severity, SvcRef};
use crate::annotations::{
    CanaryMatch, CanaryRule, CanarySource, CanaryValue, IngressAnnotations, MirrorTarget, ModeAnno,
    ServiceRef,
};
use crate::endpoints::{svc_hash, SvcKey};

/// A route built for one path, before routes of one Ingress are merged and named.
pub(crate) struct PathRoute {
    pub rule: RuleKey,
    pub route: RouteV1,
    pub canaries: Vec<IngressKey>,
    pub services: Vec<SvcRef>,
}

/// A finished route with what the final assembly needs, computed once per build.
#[derive(Debug)]
pub(crate) struct BuiltRoute {
    /// The route's compact JSON, as it appears in the config (the route itself is not kept:
    /// at fleet scale it would double the memory of the built routes).
    pub json: String,
    pub origin: RouteOrigin,
    /// SHA-256 of `json` (the revision hashes these, not the whole config).
    pub digest: [u8; 32],
    /// SHA-256 of the route without its ready counts (the routes revision hashes these).
    pub shape_digest: [u8; 32],
    /// Ready counts of its backends in the plugin's slot order (base, canaries, fallback):
    /// the route's row of the state document.
    pub ready: Vec<Option<u32>>,
    /// Per member (in member order): what the route says about its capacity there.
    pub members: Vec<MemberUse>,
    /// What it claims ([`fleetgate_plugin::route::claims`]): later routes leave these alone.
    pub claims: Vec<String>,
}

/// A route's view of one member, for the cluster states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemberUse {
    /// The base backend there: hash of its upstream and its ready endpoints (metrics).
    pub base: Option<(u64, u32)>,
    /// Some backend there has a ready count.
    pub counted: bool,
    /// Every counted backend there has 0 ready.
    pub all_zero: bool,
    /// Some counted backend there has 0 ready.
    pub some_zero: bool,
    /// Some Service of the route has not-ready endpoints there.
    pub not_ready: bool,
}

/// The routes one base Ingress yields, and the problems building them reported.
#[derive(Debug, Default)]
pub(crate) struct BuiltBase {
    pub routes: Vec<BuiltRoute>,
    pub problems: Vec<Problem>,
}

/// What a base Ingress's routes were built from: the Ingress versions (base and canaries, by
/// identity) with the entries planned, and the Services used.
struct Cached {
    /// Keeps the versions alive, so the addresses in `fingerprint` cannot be reused.
    _pins: Vec<Arc<Accepted>>,
    fingerprint: Vec<usize>,
    /// Hashes of the Services read.
    services: Vec<u64>,
    built: Arc<BuiltBase>,
}

/// Built routes per base Ingress.
#[derive(Default)]
pub(crate) struct Cache {
    by_base: HashMap<IngressKey, Cached>,
}

impl Cache {
    /// Rebuild one base Ingress whose Services changed (its plan did not).
    pub fn rebuild(&mut self, b: &BasePlan<'_>, ctx: &Ctx<'_>) -> Arc<BuiltBase> {
        let built = Arc::new(build_base(b, ctx));
        if let Some(c) = self.by_base.get_mut(b.ingress) {
            c.built = Arc::clone(&built);
        }
        built
    }

    /// Build every planned base Ingress whose inputs changed; reuse the others.
    pub fn build_all(
        &mut self,
        plan: &[BasePlan<'_>],
        ctx: &Ctx<'_>,
        dirty: &Dirty,
    ) -> Vec<Arc<BuiltBase>> {
        let mut by_base = HashMap::with_capacity(plan.len());
        let mut out = Vec::with_capacity(plan.len());
        for b in plan {
            let (pins, fingerprint) = fingerprint(b);
            let cached = self
                .by_base
                .remove(b.ingress)
                .filter(|c| c.fingerprint == fingerprint && !dirty.touches(&c.services));
            let cached = match cached {
                Some(c) => c,
                None => Cached {
                    _pins: pins,
                    fingerprint,
                    services: services_of(b),
                    built: Arc::new(build_base(b, ctx)),
                },
            };
            out.push(Arc::clone(&cached.built));
            by_base.insert(b.ingress.clone(), cached);
        }
        self.by_base = by_base;
        out
    }
}

/// Identity of the inputs: the base version, then per planned path its entry index and the
/// versions and entry indexes of its canaries.
fn fingerprint(b: &BasePlan<'_>) -> (Vec<Arc<Accepted>>, Vec<usize>) {
    let mut pins = vec![Arc::clone(b.accepted)];
    let mut fp = vec![Arc::as_ptr(b.accepted) as usize];
    for p in &b.paths {
        fp.extend([p.index, p.canaries.len()]);
        for c in &p.canaries {
            pins.push(Arc::clone(c.accepted));
            fp.extend([Arc::as_ptr(c.accepted) as usize, c.index]);
        }
    }
    (pins, fp)
}

/// Every Service a base Ingress's routes read (backends, canaries, mirror, default backend),
/// by hash.
pub(crate) fn services_of(b: &BasePlan<'_>) -> Vec<u64> {
    let mut out: Vec<SvcKey> = Vec::new();
    for p in &b.paths {
        out.push(p.entry.svc.key());
        out.extend(p.canaries.iter().map(|c| c.entry.svc.key()));
    }
    if let Some((MirrorTarget::Service(s), _)) = &b.annos.mirror {
        out.push((s.namespace.clone(), s.name.clone()));
    }
    if let Some(s) = &b.annos.default_backend {
        out.push((s.namespace.clone(), s.name.clone()));
    }
    let mut hashes: Vec<u64> = out.iter().map(svc_hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// Build one base Ingress's routes: every planned path, merged where only paths differ.
fn build_base(b: &BasePlan<'_>, ctx: &Ctx<'_>) -> BuiltBase {
    let mut problems = Vec::new();
    let mut routes: Vec<PathRoute> = b
        .paths
        .iter()
        .filter_map(|p| build_path(b, p, ctx, &mut problems))
        .collect();
    routes.sort_by(|x, y| x.rule.cmp(&y.rule));
    let mut named = Vec::new();
    name_routes(b.ingress, merge(routes), &mut named);
    let routes = named
        .into_iter()
        .map(|(route, origin)| finish::finished(route, origin, ctx))
        .collect();
    BuiltBase { routes, problems }
}

/// Routes of one Ingress that differ only in their paths become one route with all the paths.
fn merge(routes: Vec<PathRoute>) -> Vec<PathRoute> {
    let mut merged: Vec<PathRoute> = Vec::new();
    for r in routes {
        if let Some(last) = merged.last_mut() {
            let mut probe = r.route.clone();
            probe.paths = last.route.paths.clone();
            if probe == last.route {
                last.route.paths.extend(r.route.paths);
                for c in r.canaries {
                    if !last.canaries.contains(&c) {
                        last.canaries.push(c);
                    }
                }
                for s in r.services {
                    if !last.services.contains(&s) {
                        last.services.push(s);
                    }
                }
                continue;
            }
        }
        merged.push(r);
    }
    merged
}

/// `namespace/name`, or `namespace/name#N` when an Ingress yields several routes.
fn name_routes(key: &IngressKey, routes: Vec<PathRoute>, out: &mut Vec<(RouteV1, RouteOrigin)>) {
    let n = routes.len();
    for (i, mut r) in routes.into_iter().enumerate() {
        r.route.name = if n == 1 {
            key.to_string()
        } else {
            format!("{key}#{}", i + 1)
        };
        let origin = RouteOrigin {
            route: r.route.name.clone(),
            kind: super::OriginKind::Ingress,
            rank: None,
            base: key.clone(),
            canaries: r.canaries,
            services: r.services,
        };
        out.push((r.route, origin));
    }
}

fn build_path(
    b: &BasePlan<'_>,
    p: &PathPlan<'_>,
    ctx: &Ctx<'_>,
    problems: &mut Vec<Problem>,
) -> Option<PathRoute> {
    let e = p.entry;
    let a = b.annos;
    let base = backends(&e.svc, ctx, &[], a.cluster_weights.as_deref());
    let built = base.and_then(|base| {
        let p = policy(a, ctx)?;
        Ok(policy_route(b.ingress.to_string(), a, ctx, p, base))
    });
    let mut route = match built {
        Ok(route) => route,
        Err(m) => {
            let msg = format!("{}: {m}; path not served", e.describe());
            problems.push(Problem::new(b.ingress, Severity::Warning, msg));
            return None;
        }
    };
    let mut services = vec![e.svc.clone()];
    let mut canary_keys = Vec::new();
    let mut canaries = Vec::new();
    for c in &p.canaries {
        match canary(c, ctx) {
            Ok(cv) => {
                canaries.push((c.ingress.clone(), cv));
                services.push(c.entry.svc.clone());
            }
            Err(m) => problems.push(Problem::new(
                c.ingress,
                Severity::Rejected,
                format!("canary for {}: {m}; not served", c.entry.describe()),
            )),
        }
    }
    let total = canary_total(&p.canaries);
    let mirror = a.mirror.as_ref().and_then(|(target, percent)| {
        mirror(target, *percent, ctx)
            .map_err(|m| problems.push(Problem::new(b.ingress, Severity::Warning, m)))
            .ok()
    });
    let fallback = a.default_backend.as_ref().and_then(|svc| {
        fallback(svc, ctx)
            .map(|(f, svc)| {
                services.push(svc);
                f
            })
            .map_err(|m| problems.push(Problem::new(b.ingress, Severity::Warning, m)))
            .ok()
    });
    route.hosts = e.host.iter().cloned().collect();
    route.paths = vec![PathV1 {
        kind: e.kind,
        path: e.path.clone(),
    }];
    route.canaries = canaries.iter().map(|(_, c)| c.clone()).collect();
    route.canary_weight_total = total;
    route.mirror = mirror;
    route.fallback = fallback;
    let route = admit(route, ctx, b.ingress, e, &mut canaries, problems)?;
    canary_keys.extend(canaries.into_iter().map(|(k, _)| k));
    canary_keys.dedup();
    Some(PathRoute {
        rule: e.rule_key(),
        route,
        canaries: canary_keys,
        services,
    })
}

/// A route to `backends` (no hosts, paths or canaries yet) with the cross-cluster policy the
/// `fleetgate.io/*` annotations set: mode and order, min-healthy, failback, sticky, pinning by
/// header, what to do when no cluster can serve. Ingresses and HTTPRoutes share it.
pub(crate) fn policy_route(
    name: String,
    a: &IngressAnnotations,
    ctx: &Ctx<'_>,
    (mode, order): (Mode, Vec<String>),
    backends: Vec<BackendV1>,
) -> RouteV1 {
    let mut failback = FailbackV1::default();
    if let Some(h) = a.failback_hold_seconds {
        failback.hold_seconds = h;
    }
    if let Some(r) = a.failback_ramp_seconds {
        failback.ramp_seconds = r;
    }
    RouteV1 {
        name,
        hosts: Vec::new(),
        paths: Vec::new(),
        mode,
        order,
        min_healthy: a.min_healthy.unwrap_or(1),
        failback,
        backends,
        pins: Vec::new(),
        route_by_header: a.route_by_header.clone(),
        canaries: Vec::new(),
        canary_weight_total: None,
        mirror: None,
        sticky: a.sticky.as_ref().map(|(cookie, age)| StickyV1 {
            cookie: cookie.clone(),
            max_age_seconds: age.unwrap_or(3600),
        }),
        when_unavailable: a
            .when_unavailable
            .unwrap_or(ctx.opts.settings.when_unavailable),
        fallback: None,
        wildcard: Default::default(),
        method: None,
        when: Vec::new(),
        request_headers: None,
        response_headers: None,
        rewrite: None,
        redirect: None,
        direct: None,
    }
}

/// Mode and order from the annotations (checked when the Ingress is read, so an error here
/// concerns the whole Ingress).
pub(crate) fn policy(a: &IngressAnnotations, ctx: &Ctx<'_>) -> Result<(Mode, Vec<String>), String> {
    match (a.mode, &a.cluster_order, &a.cluster) {
        (Some(ModeAnno::ActiveActive) | None, None, None) => Ok((Mode::ActiveActive, Vec::new())),
        // A canary's `fleetgate.io/cluster` pins the canary, not the policy.
        (Some(ModeAnno::ActiveActive) | None, None, Some(_)) if a.canary.is_some() => {
            Ok((Mode::ActiveActive, Vec::new()))
        }
        (Some(ModeAnno::ActiveActive), Some(_), _) => {
            Err("fleetgate.io/cluster-order needs fleetgate.io/mode: active-standby".into())
        }
        (Some(ModeAnno::ActiveActive), None, Some(_)) => Err(
            "fleetgate.io/cluster on a base Ingress means active-standby; it conflicts with mode active-active"
                .into(),
        ),
        (_, Some(_), Some(_)) => {
            Err("set fleetgate.io/cluster-order or fleetgate.io/cluster, not both".into())
        }
        (_, Some(o), None) => Ok((Mode::ActiveStandby, o.clone())),
        // MSE "subset pinned to the primary, empty subset -> all pods": primary first, then the
        // other members by id.
        (_, None, Some(c)) => {
            let mut o = vec![c.clone()];
            o.extend(ctx.members.iter().filter(|m| m.id != *c).map(|m| m.id.clone()));
            Ok((Mode::ActiveStandby, o))
        }
        (Some(ModeAnno::ActiveStandby), None, None) => Err(
            "fleetgate.io/mode active-standby needs fleetgate.io/cluster-order (primary first)"
                .into(),
        ),
    }
}

/// The Service port number the upstream name carries: as written, or (by name) the first
/// member's (by id) Service port of that name.
fn service_port_number(svc: &SvcRef, ctx: &Ctx<'_>) -> Result<u16, String> {
    svc.port_number(&ctx.members).ok_or_else(|| {
        format!("no member has Service {svc} with that port name, so it has no port number")
    })
}

/// Fill an upstream name template: `{port}`, `{cluster}`, `{service}`, `{namespace}`.
pub fn render_template(t: &str, port: u16, cluster: &str, svc: &str, ns: &str) -> String {
    t.replace("{port}", &port.to_string())
        .replace("{cluster}", cluster)
        .replace("{service}", svc)
        .replace("{namespace}", ns)
}

/// One backend per member (or per member listed in `only`, if any), ready counts from the
/// member's index.
pub(crate) fn backends(
    svc: &SvcRef,
    ctx: &Ctx<'_>,
    only: &[String],
    weights: Option<&[(String, u32)]>,
) -> Result<Vec<BackendV1>, String> {
    let port = service_port_number(svc, ctx)?;
    let key = svc.key();
    Ok(ctx
        .members
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.id))
        .map(|m| BackendV1 {
            cluster: m.id.clone(),
            upstream: render_template(
                &ctx.opts.upstream_template,
                port,
                &m.id,
                &svc.name,
                &svc.namespace,
            ),
            ready: match m.contact {
                Contact::Never => None,
                Contact::Live | Contact::Lost => Some(m.index.count(&key, &svc.port).ready),
            },
            // Members not listed under cluster-weights get 0.
            weight: weights.map(|ws| ws.iter().find(|(c, _)| *c == m.id).map_or(0, |(_, w)| *w)),
        })
        .collect())
}

fn canary(c: &CanaryPlan<'_>, ctx: &Ctx<'_>) -> Result<CanaryV1, String> {
    let (when, weight) = match c.annos.canary.as_ref() {
        Some(CanaryMatch::When(rules)) => (rules.iter().map(condition).collect(), None),
        Some(CanaryMatch::Weight { weight, .. }) => (Vec::new(), Some(*weight)),
        None => return Err("not a canary".to_string()),
    };
    Ok(CanaryV1 {
        name: c.ingress.to_string(),
        when,
        weight,
        backends: backends(&c.entry.svc, ctx, c.annos.cluster.as_slice(), None)?,
        direct: None,
    })
}

fn condition(r: &CanaryRule) -> ConditionV1 {
    let matcher = match &r.value {
        CanaryValue::Always => MatchV1::Always,
        CanaryValue::OneOf(v) => MatchV1::Regex(format!("always|{v}")),
        CanaryValue::Pattern(p) => MatchV1::Regex(format!(".*{p}.*")),
        CanaryValue::Exact(v) => MatchV1::Exact(v.clone()),
    };
    let (header, cookie, query) = match &r.source {
        CanarySource::Header(h) => (Some(h.clone()), None, None),
        CanarySource::Cookie(c) => (None, Some(c.clone()), None),
        CanarySource::Query(q) => (None, None, Some(q.clone())),
    };
    ConditionV1 {
        header,
        cookie,
        query,
        matcher,
    }
}

/// Higress normalisation: `T = max(Σ weights, total of the first weighted canary or 100)`,
/// written out so that a weight above the total (the canary takes everything) needs no special
/// case in the plugin.
fn canary_total(canaries: &[CanaryPlan<'_>]) -> Option<u32> {
    let weighted = canaries.iter().filter_map(|c| match c.annos.canary {
        Some(CanaryMatch::Weight { weight, total }) => Some((weight, total)),
        _ => None,
    });
    let mut first_total = None;
    let mut sum: u64 = 0;
    for (i, (w, t)) in weighted.enumerate() {
        if i == 0 {
            first_total = t;
        }
        sum += u64::from(w);
    }
    let t = sum.max(u64::from(first_total.unwrap_or(100)));
    (t != 100 || first_total.is_some()).then(|| u32::try_from(t).unwrap_or(u32::MAX))
}

/// The `default-backend` Service in every member, on its first port (Higress), taking the
/// route's traffic when no cluster can serve the base Service.
fn fallback(s: &ServiceRef, ctx: &Ctx<'_>) -> Result<(FallbackV1, SvcRef), String> {
    let port = first_port(s, ctx).ok_or_else(|| {
        format!(
            "default-backend {}/{}: no member has this Service with a port; no fallback",
            s.namespace, s.name
        )
    })?;
    let svc = SvcRef {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        port: PortRef::Number(port),
    };
    let f = FallbackV1 {
        name: format!("{}/{}", s.namespace, s.name),
        backends: backends(&svc, ctx, &[], None)?,
    };
    Ok((f, svc))
}

/// The first port of a Service, from the first member (by id) that has the Service.
fn first_port(s: &ServiceRef, ctx: &Ctx<'_>) -> Option<u16> {
    let key = (s.namespace.clone(), s.name.clone());
    ctx.members.iter().find_map(|m| {
        let ports = m.index.service(&key)?.ports.as_ref()?;
        ports.first().map(|p| p.port)
    })
}

/// The mirror upstream. A Service target must exist in some member (Higress ignores the
/// annotation otherwise); its port defaults to the Service's first port.
fn mirror(target: &MirrorTarget, percent: f64, ctx: &Ctx<'_>) -> Result<MirrorV1, String> {
    let upstream = match target {
        MirrorTarget::Fqdn { host, port } => ctx
            .opts
            .mirror_fqdn_template
            .replace("{port}", &port.to_string())
            .replace("{host}", host),
        MirrorTarget::Service(s) => {
            let port = first_port(s, ctx)
                .map(|first| s.port.unwrap_or(first))
                .ok_or_else(|| {
                    format!(
                        "mirror-target-service {}/{}: no member has this Service with a port; not mirrored",
                        s.namespace, s.name
                    )
                })?;
            render_template(&ctx.opts.mirror_template, port, "", &s.name, &s.namespace)
        }
    };
    Ok(MirrorV1 { upstream, percent })
}
