//! The plugin's word on every route, cluster states, and the final config with its revision.

use std::sync::Arc;

use fleetgate_plugin::config::{
    self as pcfg, CanaryV1, ClusterState, ClusterV1, ConfigError, ConfigV1, RouteV1,
};
use sha2::{Digest, Sha256};

use crate::hashing::hash_of;

use super::ingress::Entry;
use super::routes::{BuiltBase, BuiltRoute, MemberUse};
use super::{
    Contact, Ctx, DeriveError, Derived, IngressKey, MemberSnapshot, Problem, RouteOrigin, Severity,
};

/// A config of the plugin-wide settings and these routes.
fn config(ctx: &Ctx<'_>, clusters: Vec<ClusterV1>, routes: Vec<RouteV1>) -> ConfigV1 {
    let s = &ctx.opts.settings;
    ConfigV1 {
        version: 1,
        revision: None,
        cluster_header: s.cluster_header.clone(),
        mirror_header: s.mirror_header.clone(),
        decision_header: s.decision_header.clone(),
        random_seed: None,
        clusters,
        passive_health: s.passive_health.clone(),
        routes,
        config_source: None,
    }
}

pub(crate) fn validate(cfg: ConfigV1) -> Result<pcfg::Config, ConfigError> {
    pcfg::Config::try_from(cfg)
}

/// The plugin's validation of one route, alone in a config of the members.
pub(crate) fn check(route: &RouteV1, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let clusters: Vec<ClusterV1> = ctx
        .members
        .iter()
        .map(|m| ClusterV1 {
            id: m.id.clone(),
            zone: None,
            state: ClusterState::Healthy,
        })
        .collect();
    validate(config(ctx, clusters, vec![route.clone()])).map(|_| ())
}

/// Check one route with the plugin's own validation (no JSON round trip). What the plugin
/// refuses is dropped at the smallest unit: a canary, the mirror, else the path.
pub(crate) fn admit(
    mut route: RouteV1,
    ctx: &Ctx<'_>,
    base: &IngressKey,
    e: &Entry,
    canaries: &mut Vec<(IngressKey, CanaryV1)>,
    problems: &mut Vec<Problem>,
) -> Option<RouteV1> {
    loop {
        let err = match check(&route, ctx) {
            Ok(()) => return Some(route),
            Err(err) => err,
        };
        let at = err.path.strip_prefix("routes[0]").unwrap_or(&err.path);
        if let Some(j) = index_after(at, ".canaries[").filter(|j| *j < canaries.len()) {
            let (key, _) = canaries.remove(j);
            route.canaries.remove(j);
            let msg = format!(
                "canary for {}: the plugin rejects it ({}: {}); not served",
                e.describe(),
                at.trim_start_matches('.'),
                err.reason
            );
            problems.push(Problem::new(&key, Severity::Rejected, msg));
        } else if at.starts_with(".fallback") && route.fallback.is_some() {
            route.fallback = None;
            let msg = format!("default-backend: the plugin rejects it ({err}); no fallback");
            problems.push(Problem::new(base, Severity::Warning, msg));
        } else if at.starts_with(".mirror") && route.mirror.is_some() {
            route.mirror = None;
            let msg = format!("mirror: the plugin rejects it ({err}); not mirrored");
            problems.push(Problem::new(base, Severity::Warning, msg));
        } else {
            let msg = format!(
                "{}: the plugin rejects the route ({}); path not served",
                e.describe(),
                err
            );
            problems.push(Problem::new(base, Severity::Warning, msg));
            return None;
        }
    }
}

/// `.canaries[3].when` after `.canaries[` -> 3.
fn index_after(path: &str, prefix: &str) -> Option<usize> {
    path.strip_prefix(prefix)?.split(']').next()?.parse().ok()
}

/// A named route with its JSON, digest and per member view, computed once per build.
pub(crate) fn finished(route: RouteV1, origin: RouteOrigin, ctx: &Ctx<'_>) -> BuiltRoute {
    // Serializing plain data into a String cannot fail.
    let json = serde_json::to_string(&route).unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(json.as_bytes()).into();
    let (shape_digest, ready) = super::state::shape_and_ready(&route);
    let members = ctx
        .members
        .iter()
        .map(|m| member_use(&route, &origin, m))
        .collect();
    BuiltRoute {
        json,
        origin,
        digest,
        shape_digest,
        ready,
        members,
        claims: fleetgate_plugin::route::claims(&route),
    }
}

fn member_use(r: &RouteV1, o: &RouteOrigin, m: &MemberSnapshot) -> MemberUse {
    let counts: Vec<u32> = r
        .backends
        .iter()
        .chain(r.canaries.iter().flat_map(|c| c.backends.iter()))
        .chain(r.fallback.iter().flat_map(|f| f.backends.iter()))
        .filter(|b| b.cluster == m.id)
        .filter_map(|b| b.ready)
        .collect();
    let base = (r.backends.iter().find(|b| b.cluster == m.id))
        .map(|b| (hash_of(&b.upstream), b.ready.unwrap_or(0)));
    MemberUse {
        base,
        counted: !counts.is_empty(),
        all_zero: counts.iter().all(|c| *c == 0),
        some_zero: counts.contains(&0),
        not_ready: o
            .services
            .iter()
            .any(|svc| m.index.count(&svc.key(), &svc.port).not_ready > 0),
    }
}

/// Assemble the config: cluster states, the revision (a SHA-256 over the settings and the
/// routes' digests, so it changes exactly when the content does), and the JSON from the routes'
/// own JSON, so a change costs what it touched plus one copy.
pub(crate) fn finish(
    built: &[Arc<BuiltBase>],
    ctx: &Ctx<'_>,
    mut problems: Vec<Problem>,
) -> Result<Derived, DeriveError> {
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (bi, b) in built.iter().enumerate() {
        problems.extend(b.problems.iter().cloned());
        order.extend((0..b.routes.len()).map(|ri| (bi, ri)));
    }
    // Ingresses of ours that are all unusable keep the last config (an invalid edit must not
    // drop routes); no Ingress of ours at all (the last one deleted) is an empty config.
    if order.is_empty() && !problems.is_empty() {
        return Err(DeriveError::NoRoutes(ctx.opts.ingress_class.clone()));
    }
    let route = |&(bi, ri): &(usize, usize)| &built[bi].routes[ri];
    // Ingress routes by name, then HTTPRoute routes in the spec's precedence (the plugin
    // breaks ties between equally specific routes by list order).
    order.sort_by(|a, b| {
        let (a, b) = (&route(a).origin, &route(b).origin);
        (&a.rank, &a.route).cmp(&(&b.rank, &b.route))
    });
    let clusters = cluster_states(order.iter().map(route), ctx);
    let mut head = config(ctx, clusters, Vec::new());
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&head)?);
    for r in order.iter().map(route) {
        hasher.update(r.digest);
    }
    let revision = hex16(&hasher.finalize());
    head.revision = Some(revision.clone());
    let json = splice_routes(
        &serde_json::to_string(&head)?,
        order.iter().map(|r| route(r).json.as_str()),
    );
    problems.sort();
    problems.dedup();
    let state = super::state::split(&head, order.iter().map(route))?;
    Ok(Derived::new(
        json,
        head,
        problems,
        built.to_vec(),
        order,
        state,
    ))
}

/// Put the routes' JSON into the head's empty `"routes":[]` (serde writes the field once, and
/// no other value of the head can contain that text: ids and header names are tokens).
fn splice_routes<'a>(head: &str, routes: impl Iterator<Item = &'a str> + Clone) -> String {
    const EMPTY: &str = "\"routes\":[]";
    let at = head.find(EMPTY).unwrap_or(head.len());
    // One allocation of the final size: the config can be tens of MB.
    let len = head.len() + routes.clone().map(|r| r.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push_str(&head[..at]);
    out.push_str("\"routes\":[");
    for (i, r) in routes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push(']');
    out.push_str(head.get(at + EMPTY.len()..).unwrap_or(""));
    out
}

pub(crate) fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A member's state: `unknown` without control-plane contact; otherwise `down` only on real
/// evidence (every Service the routes use has zero ready endpoints there), `degraded` when some
/// Service has none or some endpoints are not ready, else `healthy`.
fn cluster_states<'a>(
    routes: impl Iterator<Item = &'a BuiltRoute>,
    ctx: &Ctx<'_>,
) -> Vec<ClusterV1> {
    // One pass over the routes, each with its members side by side.
    let mut acc = vec![Tally::default(); ctx.members.len()];
    for r in routes {
        for (t, u) in acc.iter_mut().zip(&r.members) {
            t.add(u);
        }
    }
    ctx.members
        .iter()
        .zip(acc)
        .map(|(m, t)| ClusterV1 {
            id: m.id.clone(),
            zone: m.zone.clone(),
            state: match m.contact {
                Contact::Lost | Contact::Never => ClusterState::Unknown,
                Contact::Live => t.state(),
            },
        })
        .collect()
}

/// What all routes say about one member.
#[derive(Debug, Clone, Copy)]
struct Tally {
    counted: bool,
    all_zero: bool,
    some_zero: bool,
    not_ready: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counted: false,
            all_zero: true,
            some_zero: false,
            not_ready: false,
        }
    }
}

impl Tally {
    fn add(&mut self, u: &MemberUse) {
        self.counted |= u.counted;
        self.all_zero &= !u.counted || u.all_zero;
        self.some_zero |= u.counted && u.some_zero;
        self.not_ready |= u.not_ready;
    }

    fn state(&self) -> ClusterState {
        if !self.counted {
            ClusterState::Healthy
        } else if self.all_zero {
            ClusterState::Down
        } else if self.some_zero || self.not_ready {
            ClusterState::Degraded
        } else {
            ClusterState::Healthy
        }
    }
}
