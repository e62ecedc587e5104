//! One HTTPRoute rule -> the plugin route its matches share (policy, backends as weighted
//! base and canaries, filters), and one match -> that route's path, method and tests.

use std::collections::HashSet;

use fleetgate_plugin::config::{
    BackendV1, CanaryV1, ConditionV1, DirectV1, MatchV1, MirrorV1, PathKind, PathV1, RouteV1,
    Wildcard,
};
use gateway_api::apis::standard::httproutes::{
    HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType as HeaderType, HttpRouteRulesMatchesPathType as PathType,
    HttpRouteRulesMatchesQueryParamsType as QueryType,
};

use super::super::routes::{backends, policy, policy_route, render_template};
use super::super::{Ctx, PortRef, SvcRef};
use crate::annotations::{self, IngressAnnotations};
use crate::gateway_api::filters::{self, RuleFilters};
use crate::gateway_api::refs::{import_clusters, resolve_one, BackendKind, FleetBackends};
use crate::gateway_api::{ObjKey, Objects};

/// The fleet as a rule's backends see it.
pub(super) struct Fleet<'a> {
    pub objs: &'a Objects,
    pub ctx: &'a Ctx<'a>,
    pub backends: FleetBackends<'a>,
}

/// Everything a rule's routes share.
pub(super) struct Rule<'a> {
    pub key: &'a ObjKey,
    pub annos: &'a IngressAnnotations,
    pub index: usize,
}

/// The route every match of a rule shares (no paths or tests yet), and the Services it uses.
/// A rule that cannot be served as written becomes a 500 route and a problem.
pub(super) fn rule_template(
    r: &Rule<'_>,
    rule: &HttpRouteRules,
    fleet: &Fleet<'_>,
    problems: &mut Vec<String>,
) -> (RouteV1, Vec<SvcRef>) {
    let fail = |problems: &mut Vec<String>, msg: String| {
        problems.push(format!("rule {}: {msg}", r.index));
        (direct_route(r, fleet.ctx), Vec::new())
    };
    let f = match filters::read(rule.filters.as_deref().unwrap_or_default()) {
        Ok(f) => f,
        Err(m) => return fail(problems, m),
    };
    let mut services = Vec::new();
    let mut route = match weighted(r, rule, fleet, &f, &mut services) {
        Ok(route) => route,
        Err(m) => return fail(problems, m),
    };
    if let Some(m) = &f.mirror {
        match mirror(r, m, fleet) {
            Ok(mv) => route.mirror = Some(mv),
            Err(m) => return fail(problems, m),
        }
    }
    route.request_headers = f.request_headers;
    route.response_headers = f.response_headers;
    route.rewrite = f.rewrite;
    route.redirect = f.redirect;
    (route, services)
}

/// A route with the HTTPRoute's policy and no backends (callers add them or an answer).
fn bare_route(r: &Rule<'_>, ctx: &Ctx<'_>) -> Result<RouteV1, String> {
    let p = policy(r.annos, ctx)?;
    let mut route = policy_route(String::new(), r.annos, ctx, p, Vec::new());
    route.wildcard = Wildcard::Suffix;
    Ok(route)
}

/// The spec's answer for a rule that cannot be served as written: 500.
fn direct_500(r: &Rule<'_>) -> DirectV1 {
    DirectV1 {
        status: 500,
        body: format!(
            "fleetgate: HTTPRoute {} rule {} cannot be served\n",
            r.key, r.index
        ),
    }
}

/// A route that answers 500 itself (the default policy: it has no backends to apply one to).
fn direct_route(r: &Rule<'_>, ctx: &Ctx<'_>) -> RouteV1 {
    let default = annotations::IngressAnnotations::default();
    let p = (Default::default(), Vec::new());
    let mut route = policy_route(String::new(), &default, ctx, p, Vec::new());
    route.wildcard = Wildcard::Suffix;
    route.direct = Some(direct_500(r));
    route
}

/// The rule's backendRefs as the base service and weighted canaries. A reference that does not
/// resolve keeps its weight and answers 500 for its share; no weight left at all (no refs, all
/// weights 0, none resolved) answers 500 for the whole rule. A redirect needs no backends.
fn weighted(
    r: &Rule<'_>,
    rule: &HttpRouteRules,
    fleet: &Fleet<'_>,
    f: &RuleFilters,
    services: &mut Vec<SvcRef>,
) -> Result<RouteV1, String> {
    let mut route = bare_route(r, fleet.ctx)?;
    if f.redirect.is_some() {
        return Ok(route);
    }
    let shares: Vec<(u32, Share)> = (rule.backend_refs.iter())
        .flatten()
        .filter_map(|b| {
            let w = u32::try_from(b.weight.unwrap_or(1))
                .ok()
                .filter(|w| *w > 0)?;
            Some((w, share(r, b, fleet)))
        })
        .collect();
    let Some(base) = shares.iter().position(|(_, s)| s.is_ok()) else {
        route.direct = Some(direct_500(r));
        return Ok(route);
    };
    for (i, (weight, s)) in shares.into_iter().enumerate() {
        match s {
            Ok((svc, b)) if i == base => {
                route.backends = b;
                services.push(svc);
            }
            Ok((svc, b)) => {
                route
                    .canaries
                    .push(canary(svc.to_string(), weight, b, None));
                services.push(svc);
            }
            Err(m) => route
                .canaries
                .push(canary(m, weight, Vec::new(), Some(direct_500(r)))),
        }
        route.canary_weight_total = Some(route.canary_weight_total.unwrap_or(0) + weight);
    }
    if route.canaries.is_empty() {
        route.canary_weight_total = None;
    }
    Ok(route)
}

fn canary(
    name: String,
    weight: u32,
    backends: Vec<BackendV1>,
    direct: Option<DirectV1>,
) -> CanaryV1 {
    CanaryV1 {
        name,
        when: Vec::new(),
        weight: Some(weight),
        backends,
        direct,
    }
}

/// A backendRef's Service and its backend in each member, or why it does not resolve.
type Share = Result<(SvcRef, Vec<BackendV1>), String>;

/// One backendRef: the Service it means and its backend in each member it names.
fn share(r: &Rule<'_>, b: &HttpRouteRulesBackendRefs, fleet: &Fleet<'_>) -> Share {
    if b.filters.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(format!(
            "backendRef {}: per-backend filters are not supported",
            b.name
        ));
    }
    let what = (
        b.group.as_deref(),
        b.kind.as_deref(),
        b.namespace.as_deref(),
        &*b.name,
    );
    let (svc, only) = service_of(r, what, b.port, fleet)?;
    let weights = r.annos.cluster_weights.as_deref();
    let backends = backends(&svc, fleet.ctx, &only, weights)?;
    Ok((svc, backends))
}

/// The Service port a reference means, and the members it is limited to (a ServiceImport's
/// clusters; none = every member).
fn service_of(
    r: &Rule<'_>,
    what: (Option<&str>, Option<&str>, Option<&str>, &str),
    port: Option<i32>,
    fleet: &Fleet<'_>,
) -> Result<(SvcRef, Vec<String>), String> {
    let grants = &fleet.objs.grants;
    let resolved = resolve_one(what, r.key, grants, &fleet.backends).map_err(|(_, m)| m)?;
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{} {}: a port is required", what.3, "backendRef"))?;
    let only = match resolved.kind {
        BackendKind::Service => Vec::new(),
        BackendKind::ServiceImport => {
            let imports = &fleet.objs.service_imports;
            let clusters = import_clusters(imports, &resolved.namespace, &resolved.name);
            if clusters.is_empty() {
                return Err(format!(
                    "ServiceImport {}/{} lists no clusters",
                    resolved.namespace, resolved.name
                ));
            }
            clusters
        }
    };
    let svc = SvcRef {
        namespace: resolved.namespace,
        name: resolved.name,
        port: PortRef::Number(port),
    };
    Ok((svc, only))
}

/// A `RequestMirror`'s backend: the Service across every member, as Ingress mirrors are.
fn mirror(r: &Rule<'_>, m: &filters::Mirror, fleet: &Fleet<'_>) -> Result<MirrorV1, String> {
    let what = (
        m.group.as_deref(),
        m.kind.as_deref(),
        m.namespace.as_deref(),
        &*m.name,
    );
    let (svc, _) = service_of(r, what, m.port, fleet)?;
    let PortRef::Number(port) = svc.port else {
        return Err("mirror port".to_string());
    };
    let t = &fleet.ctx.opts.mirror_template;
    Ok(MirrorV1 {
        upstream: render_template(t, port, "", &svc.name, &svc.namespace),
        percent: m.percent,
    })
}

/// A match's path, method and header and query tests. Of tests naming the same header (any
/// case) or query parameter, the first counts, as the spec says.
pub(super) fn apply_match(route: &mut RouteV1, m: &HttpRouteRulesMatches) {
    let p = m.path.clone().unwrap_or_default();
    let kind = match p.r#type.unwrap_or(PathType::PathPrefix) {
        PathType::Exact => PathKind::Exact,
        PathType::PathPrefix => PathKind::Prefix,
        PathType::RegularExpression => PathKind::Regex,
    };
    route.paths = vec![PathV1 {
        kind,
        path: p.value.unwrap_or_else(|| "/".to_string()),
    }];
    route.method = m
        .method
        .as_ref()
        .map(|v| format!("{v:?}").to_ascii_uppercase());
    let mut seen = HashSet::new();
    for h in m.headers.iter().flatten() {
        let name = h.name.to_ascii_lowercase();
        if seen.insert(name.clone()) {
            let regex = h.r#type == Some(HeaderType::RegularExpression);
            route.when.push(test(Some(name), None, &h.value, regex));
        }
    }
    seen.clear();
    for q in m.query_params.iter().flatten() {
        if seen.insert(q.name.clone()) {
            let regex = q.r#type == Some(QueryType::RegularExpression);
            route
                .when
                .push(test(None, Some(q.name.clone()), &q.value, regex));
        }
    }
}

fn test(header: Option<String>, query: Option<String>, value: &str, regex: bool) -> ConditionV1 {
    ConditionV1 {
        header,
        cookie: None,
        query,
        matcher: match regex {
            true => MatchV1::Regex(value.to_string()),
            false => MatchV1::Exact(value.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::cli::{self, RenderArgs};
    use crate::derive::{DeriveOptions, MemberSnapshot};

    /// The two fixture members and the routing fixture's objects.
    fn fixture() -> (Vec<MemberSnapshot>, Objects) {
        let fleet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
        let args = RenderArgs {
            fleet: vec![fleet.join("clusters")],
            members: ["hz-a", "hz-b"]
                .map(|m| (m.to_string(), fleet.join("members").join(m)))
                .to_vec(),
            zones: vec![],
            options: DeriveOptions::default(),
        };
        let (_, members) = cli::render_with_members(&args).unwrap();
        let dump = cli::load_dir(&fleet.join("gateway-api-routing")).unwrap();
        (members, dump.gateway_api)
    }

    fn rule_of<'o>(objs: &'o Objects, route: &str, index: usize) -> &'o HttpRouteRules {
        let r = objs
            .http_routes
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(route));
        &r.unwrap().spec.rules.as_ref().unwrap()[index]
    }

    /// The route template of rule `index` of HTTPRoute `route`, and its problems.
    fn template(route: &str, index: usize) -> (RouteV1, Vec<String>) {
        let (members, objs) = fixture();
        let opts = DeriveOptions::default();
        let ctx = Ctx {
            members: members.iter().collect(),
            member_ids: members
                .iter()
                .map(|m| m.id.as_str())
                .collect::<BTreeSet<_>>(),
            opts: &opts,
        };
        let r = objs
            .http_routes
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(route));
        let annotations = r.unwrap().metadata.annotations.clone().unwrap_or_default();
        let annos = annotations::parse("default", &annotations).unwrap();
        let key = ObjKey {
            namespace: "default".into(),
            name: route.into(),
        };
        let rule = Rule {
            key: &key,
            annos: &annos,
            index,
        };
        let fleet = Fleet {
            objs: &objs,
            ctx: &ctx,
            backends: FleetBackends {
                members: &members,
                imports: &objs.service_imports,
            },
        };
        let mut problems = Vec::new();
        let (t, _) = rule_template(&rule, rule_of(&objs, route, index), &fleet, &mut problems);
        (t, problems)
    }

    fn clusters(b: &[BackendV1]) -> Vec<&str> {
        b.iter().map(|b| b.cluster.as_str()).collect()
    }

    #[test]
    fn weights_make_a_base_and_canaries_and_a_missing_backend_keeps_its_share_as_500s() {
        let (t, problems) = template("split", 0);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(clusters(&t.backends), ["hz-a", "hz-b"]);
        assert!(t.backends[0].upstream.contains("|shop.default."));
        assert_eq!(t.canary_weight_total, Some(100));
        let shares: Vec<(Option<u32>, bool)> = t
            .canaries
            .iter()
            .map(|c| (c.weight, c.direct.is_some()))
            .collect();
        assert_eq!(shares, [(Some(15), false), (Some(5), true)]);
        assert!(
            t.canaries[1].name.contains("checkout"),
            "{}",
            t.canaries[1].name
        );
        // The annotations' policy.
        assert_eq!(t.order, ["hz-b", "hz-a"]);
        assert_eq!(t.failback.hold_seconds, 20);
    }

    #[test]
    fn a_service_import_backend_is_only_in_the_clusters_it_imports_from() {
        let (t, _) = template("imported", 0);
        assert_eq!(clusters(&t.backends), ["hz-b"]);
    }

    #[test]
    fn all_weights_zero_and_an_unsupported_filter_answer_500() {
        let (t, problems) = template("zero", 0);
        assert!(problems.is_empty(), "weights 0 is valid: {problems:?}");
        assert_eq!(t.direct.map(|d| d.status), Some(500));
        assert!(t.backends.is_empty());
        let (t, problems) = template("filters", 3);
        assert_eq!(t.direct.map(|d| d.status), Some(500));
        assert!(problems[0].contains("ExtensionRef"), "{problems:?}");
    }

    #[test]
    fn filters_become_the_plugins_edits_and_the_mirror_names_the_service_across_members() {
        let (t, _) = template("filters", 1);
        let rewrite = t.rewrite.unwrap();
        assert_eq!(rewrite.hostname.as_deref(), Some("backend.example.com"));
        assert_eq!(t.request_headers.unwrap().remove, ["x-debug"]);
        assert_eq!(t.response_headers.unwrap().set[0].name, "cache-control");
        let (t, _) = template("filters", 2);
        let m = t.mirror.unwrap();
        assert_eq!(m.percent, 25.0);
        assert_eq!(
            m.upstream,
            "outbound|8080||shop-shadow.default.svc.cluster.local"
        );
        let (t, _) = template("filters", 0);
        assert!(t.backends.is_empty() && t.redirect.is_some());
    }

    #[test]
    fn a_match_becomes_path_method_and_tests_with_the_first_of_equal_header_names() {
        let m: HttpRouteRulesMatches = serde_json::from_value(serde_json::json!({
            "path": {"type": "RegularExpression", "value": "/api/v[0-9]+/.*"},
            "method": "POST",
            "headers": [{"name": "X-Env", "value": "a"}, {"name": "x-env", "value": "b"},
                        {"name": "X-Tier", "type": "RegularExpression", "value": "gold|silver"}],
            "queryParams": [{"name": "debug", "value": "1"}, {"name": "debug", "value": "2"}]
        }))
        .unwrap();
        let (mut route, _) = template("zero", 0);
        apply_match(&mut route, &m);
        assert_eq!(route.paths[0].kind, PathKind::Regex);
        assert_eq!(route.method.as_deref(), Some("POST"));
        let tests: Vec<(Option<&str>, Option<&str>, &MatchV1)> = (route.when.iter())
            .map(|c| (c.header.as_deref(), c.query.as_deref(), &c.matcher))
            .collect();
        assert_eq!(
            tests,
            [
                (Some("x-env"), None, &MatchV1::Exact("a".into())),
                (Some("x-tier"), None, &MatchV1::Regex("gold|silver".into())),
                (None, Some("debug"), &MatchV1::Exact("1".into())),
            ]
        );
    }
}
