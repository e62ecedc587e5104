//! The plugin's word on every route, cluster states, and the final config with its revision.

use std::sync::Arc;

use fleetgate_plugin::config::{
    self as pcfg, CanaryV1, ClusterState, ClusterV1, ConfigError, ConfigV1, RouteV1,
};
use sha2::{Digest, Sha256};

use super::ingress::Entry;
use super::{Contact, Ctx, DeriveError, Derived, IngressKey, Problem, RouteOrigin, Severity};

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

fn validate(cfg: ConfigV1) -> Result<pcfg::Config, ConfigError> {
    pcfg::Config::try_from(cfg)
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
    let clusters: Vec<ClusterV1> = ctx
        .members
        .iter()
        .map(|m| ClusterV1 {
            id: m.id.clone(),
            zone: None,
            state: ClusterState::Healthy,
        })
        .collect();
    loop {
        let err = match validate(config(ctx, clusters.clone(), vec![route.clone()])) {
            Ok(_) => return Some(route),
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

/// Cluster states, revision, and the plugin's validation of the whole config (a route it
/// still refuses, which per-route admission should make impossible, is dropped alone).
pub(crate) fn finish(
    mut built: Vec<(RouteV1, RouteOrigin)>,
    ctx: &Ctx<'_>,
    mut problems: Vec<Problem>,
) -> Result<Derived, DeriveError> {
    loop {
        if built.is_empty() {
            return Err(DeriveError::NoRoutes(ctx.opts.ingress_class.clone()));
        }
        let routes: Vec<RouteV1> = built.iter().map(|(r, _)| r.clone()).collect();
        let mut config = config(ctx, cluster_states(&built, ctx), routes);
        let unrevised = serde_json::to_vec(&config)?;
        let revision = hex16(&Sha256::digest(&unrevised));
        config.revision = Some(revision.clone());
        match validate(config.clone()) {
            Ok(plugin) => {
                let json = serde_json::to_string(&config)?;
                problems.sort();
                problems.dedup();
                return Ok(Derived {
                    config,
                    plugin: Arc::new(plugin),
                    json,
                    revision,
                    problems,
                    origins: built.into_iter().map(|(_, o)| o).collect(),
                });
            }
            Err(e) => {
                let Some(i) = index_after(&e.path, "routes[").filter(|i| *i < built.len()) else {
                    return Err(DeriveError::Invalid(e));
                };
                let (_, origin) = built.remove(i);
                for k in std::iter::once(origin.base).chain(origin.canaries) {
                    let msg = format!("the plugin rejects the route: {}", e.reason);
                    problems.push(Problem::new(&k, Severity::Rejected, msg));
                }
            }
        }
    }
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A member's state: `unknown` without control-plane contact; otherwise `down` only on real
/// evidence (every Service the routes use has zero ready endpoints there), `degraded` when some
/// Service has none or some endpoints are not ready, else `healthy`.
fn cluster_states(built: &[(RouteV1, RouteOrigin)], ctx: &Ctx<'_>) -> Vec<ClusterV1> {
    ctx.members
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
                                .chain(r.fallback.iter().flat_map(|f| f.backends.iter()))
                        })
                        .filter(|b| b.cluster == m.id)
                        .filter_map(|b| b.ready)
                        .collect();
                    let not_ready = built
                        .iter()
                        .flat_map(|(_, o)| o.services.iter())
                        .any(|svc| m.index.count(&svc.key(), &svc.port).not_ready > 0);
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
