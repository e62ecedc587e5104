//! HTTPRoutes -> plugin routes: one route per (rule, match), on the hostnames where the route
//! attached to a listener of ours, with the rule's backendRefs as the base service and weighted
//! canaries, its filters as the route's header edits, rewrite, redirect and mirror, and the
//! `fleetgate.io/*` annotations of the HTTPRoute as its cross-cluster policy ([`rules`]).
//!
//! Precedence is the spec's: the plugin orders equally keyed routes by method, header and
//! query tests, then by list order, and the routes are listed oldest HTTPRoute first, then by
//! namespace/name, then rule and match order ([`Precedence`]). A match that an earlier one
//! already claims for a host (same path, method and tests) can never be reached there and is
//! left out.
//!
//! A rule that cannot be served as written (a filter fleetgate cannot apply, a match the plugin
//! refuses) is answered with a 500, as the spec asks, and reported per route so its status can
//! say `PartiallyInvalid` (or `Accepted=False` when no rule is valid).
//!
//! A change costs what it touches, as for Ingresses: an HTTPRoute is evaluated ([`evaluation`])
//! and translated again only when it, where it attaches, or a Service it reads changed, and
//! the claims are checked only from the first route whose claims changed ([`claiming`]).

mod claiming;
mod evaluation;
mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetgate_plugin::config::RouteV1;
use fleetgate_plugin::route;
use foldhash::{HashMap, HashSet};
use gateway_api::apis::standard::httproutes::{HttpRoute, HttpRouteRulesMatches};

use super::finish::{check, finished};
use super::routes::BuiltBase;
use super::{
    Ctx, Dirty, GatewayInputs, IngressKey, MemberSnapshot, OriginKind, RouteOrigin, SvcRef,
};
use crate::annotations;
use crate::gateway_api::refs::FleetBackends;
use crate::gateway_api::{ObjKey, Objects, Outcome, RouteOutcome, RuleProblems};
use crate::hashing::hash_of;
use evaluation::{version_of, Evaluated};
use rules::{apply_match, rule_template, Fleet, Rule};

/// Where an HTTPRoute's route stands in the spec's precedence among equally specific routes:
/// the older HTTPRoute, then namespace/name, then rule and match order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Precedence {
    /// `creationTimestamp`, in seconds.
    pub created: Option<i64>,
    pub route: IngressKey,
    pub rule: usize,
    pub r#match: usize,
}

/// What translating the HTTPRoutes gave: per HTTPRoute its built routes, and the rules not
/// served as written.
#[derive(Debug, Default)]
pub(crate) struct Translated {
    pub built: Vec<Arc<BuiltBase>>,
    pub invalid: BTreeMap<ObjKey, RuleProblems>,
}

/// One match of a rule, translated: the route on every attached host, before claims.
#[derive(Debug)]
struct Planned {
    route: RouteV1,
    services: Vec<SvcRef>,
    precedence: Precedence,
    /// Per host (`""`: any host), what the route claims there ([`route::claims`]; `None` for
    /// a regex path, which claims nothing).
    claims: Vec<(String, Option<String>)>,
}

/// An HTTPRoute as last translated.
struct Entry {
    /// The evaluation it was translated from: the memory gives a new one when the route,
    /// where it attaches, or a Service it names may have changed.
    outcome: Arc<RouteOutcome>,
    matches: Vec<Planned>,
    problems: Option<RuleProblems>,
    /// A hash of its key and what its matches claim.
    claims: u64,
    /// The hosts each match kept in the last claims pass.
    kept: Vec<Option<Vec<String>>>,
    /// Its routes on those hosts (`None`: not built since it was translated).
    built: Option<Arc<BuiltBase>>,
    /// The last translation that met the route.
    pass: u64,
}

/// Evaluated and translated HTTPRoutes, by key.
#[derive(Default)]
pub(crate) struct Cache {
    by_route: HashMap<ObjKey, Entry>,
    evaluated: evaluation::Memo,
    claimed: claiming::Sequence,
    /// ReferenceGrants and ServiceImports the entries were made with.
    world: u64,
    pass: u64,
}

/// Evaluate the Gateway API objects, and translate every HTTPRoute that attached to a
/// listener of ours.
pub(crate) fn translate(
    g: &GatewayInputs<'_>,
    members: &[MemberSnapshot],
    ctx: &Ctx<'_>,
    ingress: &[Arc<BuiltBase>],
    (dirty, cache): (&Dirty, &mut Cache),
) -> (Outcome, Translated) {
    let objs = g.objects;
    // By version, not content: a fleet exporting thousands of Services has as many
    // ServiceImports, and this runs on every derivation.
    let grants: Vec<u64> = (objs.grants.iter())
        .map(|g| {
            let m = &g.metadata;
            version_of((m.uid.as_ref(), m.resource_version.as_ref()), g)
        })
        .collect();
    let imports: Vec<u64> = (objs.service_imports.iter())
        .map(|i| {
            let m = &i.metadata;
            version_of((m.uid.as_ref(), m.resource_version.as_ref()), i)
        })
        .collect();
    let world = hash_of(&(grants, imports));
    if world != cache.world {
        *cache = Cache {
            world,
            ..Cache::default()
        };
    }
    let evaluated = evaluation::evaluate(g, members, dirty, &mut cache.evaluated);
    let fleet = Fleet {
        objs,
        ctx,
        backends: FleetBackends {
            members,
            imports: &objs.service_imports,
        },
    };
    let mut out = Translated::default();
    // What the Ingress routes (listed first) claim, an HTTPRoute leaves alone.
    let mut pass = claiming::Pass::new(&cache.claimed, ingress);
    let mut met: Vec<&ObjKey> = Vec::new();
    cache.pass += 1;
    for (route, o) in by_precedence(objs, &evaluated) {
        if o.attachments.is_empty() {
            continue;
        }
        let (claims, again) = current(&mut cache.by_route, (route, o), cache.pass, &fleet);
        let by_route = &cache.by_route;
        let earlier = (met.iter().filter_map(|k| by_route.get(*k)))
            .flat_map(|e| e.matches.iter().flat_map(|m| &m.claims))
            .filter_map(|(_, c)| c.as_deref());
        pass.next(claims, again, earlier);
        met.push(&o.route);
        let Some(entry) = cache.by_route.get_mut(&o.route) else {
            continue;
        };
        entry.pass = cache.pass;
        match pass.claimed.as_mut() {
            Some(claimed) => claim(entry, claimed, ctx),
            None => keep(entry, ctx),
        }
        out.built.extend(entry.built.clone());
        if let Some(p) = &entry.problems {
            out.invalid.insert(o.route.clone(), p.clone());
        }
    }
    cache.claimed = pass.finish();
    let pass = cache.pass;
    cache.by_route.retain(|_, e| e.pass == pass);
    (evaluated.outcome, out)
}

/// Make sure the route's translation is current: kept while it was made from this evaluation
/// (else made again; the hosts its matches kept carry over). Its claims' hash, and whether
/// this translation met it before.
fn current(
    by_route: &mut HashMap<ObjKey, Entry>,
    (route, o): (&HttpRoute, &Arc<RouteOutcome>),
    pass: u64,
    fleet: &Fleet<'_>,
) -> (u64, bool) {
    match by_route.get_mut(&o.route) {
        Some(e) if Arc::ptr_eq(&e.outcome, o) => (e.claims, e.pass == pass),
        Some(e) => {
            let kept = std::mem::take(&mut e.kept);
            let again = e.pass == pass;
            *e = Entry {
                kept,
                ..plan(route, o, fleet)
            };
            (e.claims, again)
        }
        None => {
            let e = plan(route, o, fleet);
            let claims = e.claims;
            by_route.insert(o.route.clone(), e);
            (claims, false)
        }
    }
}

/// The evaluated routes with their HTTPRoutes, oldest first, then by key (the evaluation is
/// sorted by key, and a stable sort keeps that order among routes of one age).
fn by_precedence<'e>(
    objs: &'e Objects,
    evaluated: &'e Evaluated,
) -> impl Iterator<Item = (&'e HttpRoute, &'e Arc<RouteOutcome>)> {
    let routes = &evaluated.outcome.routes;
    let source = |i: usize| &objs.http_routes[evaluated.sources[i]];
    let mut order: Vec<usize> = (0..routes.len()).collect();
    order.sort_by_key(|i| created(source(*i)));
    order.into_iter().map(move |i| (source(i), &routes[i]))
}

fn created(r: &HttpRoute) -> Option<i64> {
    r.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
}

/// The union of the attachments' hostnames; empty = any host.
fn hosts_of(o: &RouteOutcome) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for a in &o.attachments {
        if a.hostnames.iter().any(|h| h == "*") {
            return Vec::new();
        }
        hosts.extend(a.hostnames.iter().cloned());
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Translate one HTTPRoute where it attached (`o`): every rule and match, checked by the
/// plugin's validation.
fn plan(route: &HttpRoute, o: &Arc<RouteOutcome>, fleet: &Fleet<'_>) -> Entry {
    let (key, hosts) = (&o.route, &hosts_of(o));
    let rules = route.spec.rules.as_deref().unwrap_or_default();
    let mut problems = RuleProblems {
        rules: rules.len(),
        ..RuleProblems::default()
    };
    let mut matches = Vec::new();
    let raw = route.metadata.annotations.clone().unwrap_or_default();
    match annotations::parse(&key.namespace, &raw) {
        Err(e) => {
            problems.messages.push(format!("annotations: {e}"));
            problems.failed = (0..rules.len()).collect();
        }
        Ok(annos) => {
            for (index, rule) in rules.iter().enumerate() {
                let r = Rule {
                    key,
                    annos: &annos,
                    index,
                };
                let mut msgs = Vec::new();
                let template = rule_template(&r, rule, fleet, &mut msgs);
                let default_match = [HttpRouteRulesMatches::default()];
                let ms = rule.matches.as_deref().filter(|m| !m.is_empty());
                for (mi, m) in ms.unwrap_or(&default_match).iter().enumerate() {
                    let p = planned(route, &r, (&template, m, mi), hosts, fleet.ctx);
                    match p {
                        Ok(p) => matches.push(p),
                        Err(e) => msgs.push(format!("rule {index} match {mi}: {e}")),
                    }
                }
                if !msgs.is_empty() {
                    problems.failed.push(index);
                    problems.messages.extend(msgs);
                }
            }
        }
    }
    let claims: Vec<_> = matches.iter().map(|m| &m.claims).collect();
    let claims = hash_of(&(key, claims));
    Entry {
        outcome: Arc::clone(o),
        matches,
        problems: (!problems.failed.is_empty()).then_some(problems),
        claims,
        kept: Vec::new(),
        built: None,
        pass: 0,
    }
}

/// One match's route on every attached host, if the plugin accepts it.
fn planned(
    route: &HttpRoute,
    r: &Rule<'_>,
    ((template, services), m, mi): (&(RouteV1, Vec<SvcRef>), &HttpRouteRulesMatches, usize),
    hosts: &[String],
    ctx: &Ctx<'_>,
) -> Result<Planned, String> {
    let mut p = template.clone();
    p.name = format!("{}/rule{}/match{mi}", r.key, r.index);
    p.hosts = hosts.to_vec();
    apply_match(&mut p, m);
    check(&p, ctx).map_err(|e| e.to_string())?;
    let any = [String::new()];
    let claims = (if hosts.is_empty() { &any[..] } else { hosts })
        .iter()
        .map(|h| {
            let one = RouteV1 {
                hosts: [h.clone()].into_iter().filter(|h| !h.is_empty()).collect(),
                ..p.clone()
            };
            (h.clone(), route::claims(&one).pop())
        })
        .collect();
    let precedence = Precedence {
        created: created(route),
        route: IngressKey {
            namespace: r.key.namespace.clone(),
            name: r.key.name.clone(),
        },
        rule: r.index,
        r#match: mi,
    };
    Ok(Planned {
        route: p,
        services: services.clone(),
        precedence,
        claims,
    })
}

/// Claim each match's hosts (in precedence order, after every earlier HTTPRoute); the built
/// routes are kept while every match keeps the same hosts.
fn claim(e: &mut Entry, claimed: &mut HashSet<String>, ctx: &Ctx<'_>) {
    let kept: Vec<Option<Vec<String>>> = (e.matches.iter())
        .map(|m| unclaimed(&m.claims, claimed))
        .collect();
    if kept != e.kept || e.built.is_none() {
        e.built = Some(build(e, &kept, ctx));
        e.kept = kept;
    }
}

/// Every match keeps the hosts it kept in the last claims pass.
fn keep(e: &mut Entry, ctx: &Ctx<'_>) {
    if e.built.is_none() {
        e.built = Some(build(e, &e.kept, ctx));
    }
}

/// The routes of the matches on the hosts they kept.
fn build(e: &Entry, kept: &[Option<Vec<String>>], ctx: &Ctx<'_>) -> Arc<BuiltBase> {
    let routes = (e.matches.iter().zip(kept))
        .filter_map(|(m, hosts)| {
            let mut route = m.route.clone();
            route.hosts = hosts.clone()?;
            let origin = RouteOrigin {
                route: route.name.clone(),
                kind: OriginKind::HttpRoute,
                rank: Some(m.precedence.clone()),
                base: m.precedence.route.clone(),
                canaries: Vec::new(),
                services: m.services.clone(),
            };
            Some(finished(route, origin, ctx))
        })
        .collect();
    Arc::new(BuiltBase {
        routes,
        problems: Vec::new(),
    })
}

/// The hosts of `claims` no earlier route claims, claiming them; `None` = none left. The host
/// `""` (a route with no hosts: any host) stays no hosts.
fn unclaimed(
    claims: &[(String, Option<String>)],
    claimed: &mut HashSet<String>,
) -> Option<Vec<String>> {
    let left: Vec<&String> = (claims.iter())
        .filter(|(_, claim)| claim.as_ref().is_none_or(|c| claimed.insert(c.clone())))
        .map(|(h, _)| h)
        .collect();
    let hosts = left.iter().filter(|h| !h.is_empty()).map(|h| h.to_string());
    (!left.is_empty()).then(|| hosts.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashSetExt;

    fn claims(hosts: &[&str], key: Option<&str>) -> Vec<(String, Option<String>)> {
        let hosts = if hosts.is_empty() { &[""][..] } else { hosts };
        (hosts.iter())
            .map(|h| (h.to_string(), key.map(|k| format!("{h} {k}"))))
            .collect()
    }

    #[test]
    fn a_match_claimed_earlier_is_left_out_only_on_the_hosts_already_claimed() {
        let mut claimed = HashSet::new();
        let (a, ab) = (["a.io"], ["a.io", "b.io"]);
        let kept = |v: &[&str]| Some(v.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        assert_eq!(unclaimed(&claims(&a, Some("/x")), &mut claimed), kept(&a));
        assert_eq!(
            unclaimed(&claims(&ab, Some("/x")), &mut claimed),
            kept(&["b.io"])
        );
        assert_eq!(unclaimed(&claims(&ab, Some("/x")), &mut claimed), None);
        assert_eq!(
            unclaimed(&claims(&a, Some("/x GET")), &mut claimed),
            kept(&a)
        );
        // A regex path claims nothing: never left out.
        assert_eq!(unclaimed(&claims(&ab, None), &mut claimed), kept(&ab));
        // No hosts: any host, claimed once.
        assert_eq!(
            unclaimed(&claims(&[], Some("/x")), &mut claimed),
            Some(vec![])
        );
        assert_eq!(unclaimed(&claims(&[], Some("/x")), &mut claimed), None);
    }
}
