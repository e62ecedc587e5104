//! Routes for Higress: per plugin route and upstream an Ingress matching the plugin's header
//! value exactly (Higress routes do not read `cluster_header`), one plain catch-all Ingress per
//! route, and keep-cluster Ingresses for Services no route uses (Higress's default
//! `onlyPushRouteCluster` gives Envoy only the clusters of routes).

use std::collections::{BTreeMap, BTreeSet};

use fleetgate_plugin::config::{PathKind, RouteV1};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};

use super::objects::meta;
use super::{ClusterName, HigressObject, HigressOptions};
use crate::derive::{Derived, IngressKey, OriginKind};

/// Higress's annotation for an exact header match (`higress.io/exact-match-header-<name>`).
const EXACT_HEADER: &str = "higress.io/exact-match-header-";
/// Keep-cluster routes answer only the gateway itself (Higress's ip-restriction annotation).
const ONLY_LOCAL: (&str, &str) = ("higress.io/whitelist-source-range", "127.0.0.1/32");
/// A reserved top-level domain (RFC 2606): no client resolves it.
const KEEP_DOMAIN: &str = "fleetgate.invalid";

/// The base Ingress of each route built from an Ingress, by route name. HTTPRoute routes get
/// no Higress objects: their matches and filters have no Ingress form (GATEWAY_API.md).
fn bases(derived: &Derived) -> BTreeMap<&str, &IngressKey> {
    derived
        .origins()
        .filter(|o| o.kind == OriginKind::Ingress)
        .map(|o| (o.route.as_str(), &o.base))
        .collect()
}

/// `<ingress name>` or `<ingress name>-<n>` for the n-th route of an Ingress.
fn route_prefix(route: &str, base: &IngressKey) -> String {
    match route.rsplit_once('#') {
        Some((_, n)) => format!("{}-{n}", base.name),
        None => base.name.clone(),
    }
}

/// Every upstream a route may choose (base, canaries, fallback), each once, in order.
fn upstreams(r: &RouteV1) -> Vec<&str> {
    let canaries = r.canaries.iter().flat_map(|c| &c.backends);
    let fallback = r.fallback.iter().flat_map(|f| &f.backends);
    let mut seen = BTreeSet::new();
    (r.backends.iter().chain(canaries).chain(fallback))
        .map(|b| b.upstream.as_str())
        .filter(|u| seen.insert(*u))
        .collect()
}

/// Header-matching and catch-all Ingresses for every route of the config.
pub(super) fn routes(
    derived: &Derived,
    known: &BTreeSet<(String, String, u16)>,
    opts: &HigressOptions,
    problems: &mut Vec<String>,
) -> Vec<HigressObject> {
    let config = derived.config();
    let bases = bases(derived);
    let annotation = format!("{EXACT_HEADER}{}", config.cluster_header);
    let mut out = Vec::new();
    let http_routes = derived
        .origins()
        .filter(|o| o.kind == OriginKind::HttpRoute);
    if let Some(n) = Some(http_routes.count()).filter(|n| *n > 0) {
        problems.push(format!(
            "{n} routes from HTTPRoutes get no Higress objects; serve Gateway API through xDS"
        ));
    }
    for r in &config.routes {
        let Some(base) = bases.get(r.name.as_str()) else {
            continue;
        };
        let sources = BTreeSet::from([(*base).clone()]);
        let prefix = route_prefix(&r.name, base);
        let mut first = None;
        for u in upstreams(r) {
            let c = match ClusterName::parse(u) {
                Some(c) if known.contains(&(c.namespace.clone(), c.service.clone(), c.port)) => c,
                _ => {
                    problems.push(format!(
                        "route {}: upstream {u:?} is no generated Service port; no Ingress for it",
                        r.name
                    ));
                    continue;
                }
            };
            let name = format!("{prefix}-{}-{}", c.service, c.port);
            let mut ing = ingress(&c, &name, &sources, r, opts);
            let annotations = ing
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.insert(annotation.clone(), u.to_string());
            out.push(HigressObject::Ingress(Box::new(ing)));
            first.get_or_insert(c);
        }
        // Requests match a route before the plugin sets the header (README: the plain route).
        if let Some(c) = first {
            let name = format!("{prefix}-catch-all");
            let catch_all = ingress(&c, &name, &sources, r, opts);
            out.push(HigressObject::Ingress(Box::new(catch_all)));
        }
    }
    out
}

/// An Ingress for the route's hosts and paths to the Service port `c`.
fn ingress(
    c: &ClusterName,
    name: &str,
    sources: &BTreeSet<IngressKey>,
    r: &RouteV1,
    opts: &HigressOptions,
) -> Ingress {
    let paths: Vec<HTTPIngressPath> = r
        .paths
        .iter()
        .map(|p| HTTPIngressPath {
            path: Some(p.path.clone()),
            path_type: match p.kind {
                PathKind::Exact => "Exact",
                PathKind::Prefix => "Prefix",
                // Only Gateway API routes have these; they are not generated for Higress.
                PathKind::Regex => "ImplementationSpecific",
            }
            .to_string(),
            backend: backend(c),
        })
        .collect();
    let hosts: Vec<Option<String>> = match r.hosts.as_slice() {
        [] => vec![None],
        hs => hs.iter().cloned().map(Some).collect(),
    };
    let rules = hosts.into_iter().map(|host| IngressRule {
        host,
        http: Some(HTTPIngressRuleValue {
            paths: paths.clone(),
        }),
    });
    Ingress {
        metadata: meta(&c.namespace, name, None, sources),
        spec: Some(IngressSpec {
            ingress_class_name: Some(opts.ingress_class.clone()),
            rules: Some(rules.collect()),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

fn backend(c: &ClusterName) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: c.service.clone(),
            port: Some(ServiceBackendPort {
                number: Some(i32::from(c.port)),
                name: None,
            }),
        }),
        resource: None,
    }
}

/// Keep-cluster Ingresses: the controller's Service and every mirror target Service, each on
/// an unresolvable host and answering only the gateway itself, so Envoy gets their clusters.
pub(super) fn keepers(derived: &Derived, opts: &HigressOptions) -> Vec<HigressObject> {
    let mut keep: BTreeMap<ClusterName, BTreeSet<IngressKey>> = BTreeMap::new();
    if let Some(s) = &opts.controller_service {
        let c = ClusterName {
            port: s.port,
            service: s.name.clone(),
            namespace: s.namespace.clone(),
        };
        keep.entry(c).or_default();
    }
    let bases = bases(derived);
    for r in &derived.config().routes {
        // FQDN mirrors (`.dns`, ServiceEntry hosts) are no Service: Higress has them its way.
        let Some(c) = r
            .mirror
            .as_ref()
            .and_then(|m| ClusterName::parse(&m.upstream))
        else {
            continue;
        };
        let sources = keep.entry(c).or_default();
        sources.extend(bases.get(r.name.as_str()).map(|b| (*b).clone()));
    }
    keep.into_iter()
        .map(|(c, sources)| HigressObject::Ingress(Box::new(keeper(&c, &sources, opts))))
        .collect()
}

fn keeper(c: &ClusterName, sources: &BTreeSet<IngressKey>, opts: &HigressOptions) -> Ingress {
    let name = format!("fleetgate-keep-{}-{}", c.service, c.port);
    let mut metadata = meta(&c.namespace, &name, None, sources);
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(ONLY_LOCAL.0.to_string(), ONLY_LOCAL.1.to_string());
    let rule = IngressRule {
        host: Some(format!(
            "{}-{}.{}.{KEEP_DOMAIN}",
            c.service, c.port, c.namespace
        )),
        http: Some(HTTPIngressRuleValue {
            paths: vec![HTTPIngressPath {
                path: Some("/".to_string()),
                path_type: "Prefix".to_string(),
                backend: backend(c),
            }],
        }),
    };
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(opts.ingress_class.clone()),
            rules: Some(vec![rule]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}
