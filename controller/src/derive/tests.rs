//! Derivation on real-shaped objects: a two-port Service (`http: 80 -> 8080`, `metrics: 9090 ->
//! metrics`) whose EndpointSlices carry target ports, and the blast-radius table: each bad
//! object affects only itself.

use std::collections::HashMap;

use fleetgate_plugin::config::{ClusterState, MatchV1, Mode};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;

/// An Ingress of our class for `shop.example.com` with one path per `(path, service, port)`.
fn ingress_paths(
    name: &str,
    ts: &str,
    annos: &[(&str, &str)],
    paths: &[(&str, &str, &str)],
) -> Ingress {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) => format!("number: {n}"),
        Err(_) => format!("name: {p}"),
    };
    let annos: String = annos
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    let paths: String = paths
        .iter()
        .map(|(path, svc, p)| {
            format!("      - path: {path}\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              {}\n", port(p))
        })
        .collect();
    let y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  uid: uid-{name}\n  generation: 1\n  creationTimestamp: \"{ts}\"\n  annotations:\n{annos}    x: y\nspec:\n  ingressClassName: fleetgate\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n{paths}"
    );
    serde_yaml::from_str(&y).unwrap()
}

fn ingress(
    name: &str,
    ts: &str,
    annos: &[(&str, &str)],
    path: &str,
    svc: &str,
    port: &str,
) -> Ingress {
    ingress_paths(name, ts, annos, &[(path, svc, port)])
}

/// `svc` with `http: 80 -> 8080` and `metrics: 9090 -> metrics`.
fn service(svc: &str) -> Service {
    serde_yaml::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec:\n  type: ClusterIP\n  ports:\n  - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n  - {{name: metrics, port: 9090, protocol: TCP, targetPort: metrics}}\n"
    ))
    .unwrap()
}

/// A slice of `svc` with target ports 8080 (http) and 9102 (metrics).
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
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: {svc}-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: {svc}}}\nports:\n- {{name: http, port: 8080, protocol: TCP}}\n- {{name: metrics, port: 9102, protocol: TCP}}\nendpoints:\n{eps}"
    );
    serde_yaml::from_str(&y).unwrap()
}

fn member(id: &str, contact: Contact, svcs: &[&str], slices: Vec<EndpointSlice>) -> MemberSnapshot {
    let services: Vec<Service> = svcs.iter().map(|s| service(s)).collect();
    MemberSnapshot {
        id: id.into(),
        zone: None,
        contact,
        index: Arc::new(MemberIndex::from_objects(&services, &slices)),
        gateway: None,
    }
}

/// The `shop` Ingress with no annotations, backend port `port`.
fn shop_on_port(port: &str) -> Ingress {
    ingress("shop", "2025-01-01T00:00:00Z", &[], "/", "shop", port)
}

/// hz-a: shop 2 ready (one nil, one true) + 1 not ready; hz-b: shop 1 ready; both have the
/// canary Service `shop-v2` with 1 ready.
fn two_members() -> Vec<MemberSnapshot> {
    let svcs = ["shop", "shop-v2"];
    vec![
        member(
            "hz-a",
            Contact::Live,
            &svcs,
            vec![
                slice("shop", &[Some(true), None, Some(false)]),
                slice("shop-v2", &[Some(true)]),
            ],
        ),
        member(
            "hz-b",
            Contact::Live,
            &svcs,
            vec![
                slice("shop", &[Some(true)]),
                slice("shop-v2", &[Some(true)]),
            ],
        ),
    ]
}

fn derive(ings: &[Ingress]) -> Derived {
    derive_config(ings, &two_members(), &DeriveOptions::default()).unwrap()
}

fn ready(d: &Derived) -> Vec<Option<u32>> {
    d.config().routes[0]
        .backends
        .iter()
        .map(|b| b.ready)
        .collect()
}

#[test]
fn service_port_80_counts_the_slices_target_port_8080() {
    // The bug of the first release: every member counted 0 and went down.
    for port in ["80", "http"] {
        let d = derive(&[shop_on_port(port)]);
        assert_eq!(ready(&d), vec![Some(2), Some(1)], "port {port}");
        assert_eq!(
            d.config().routes[0].backends[0].upstream,
            "outbound|80|hz-a|shop.default.svc.cluster.local"
        );
        assert_eq!(d.config().clusters[0].state, ClusterState::Degraded);
        assert_eq!(d.config().clusters[1].state, ClusterState::Healthy);
    }
    // The metrics port by number names the Service port 9090, not the target.
    let d = derive(&[shop_on_port("9090")]);
    assert_eq!(ready(&d), vec![Some(2), Some(1)]);
    assert!(d.config().routes[0].backends[0]
        .upstream
        .starts_with("outbound|9090|"));
    // A number that is only a target port is no Service port: nothing is ready there.
    let d = derive(&[shop_on_port("8080")]);
    assert_eq!(ready(&d), vec![Some(0), Some(0)]);
    assert!(d
        .config()
        .clusters
        .iter()
        .all(|c| c.state == ClusterState::Down));
}

#[test]
fn a_member_without_the_service_has_zero_endpoints_for_it() {
    let mut ms = two_members();
    ms[1] = member(
        "hz-b",
        Contact::Live,
        &[],
        vec![slice("shop", &[Some(true)])],
    );
    let d = derive_config(&[shop_on_port("80")], &ms, &DeriveOptions::default()).unwrap();
    assert_eq!(ready(&d), vec![Some(2), Some(0)]);
    assert_eq!(d.config().clusters[1].state, ClusterState::Down);
}

#[test]
fn a_named_port_no_member_defines_drops_only_that_path() {
    let ing = ingress_paths(
        "shop",
        "2025-01-01T00:00:00Z",
        &[],
        &[("/", "shop", "http"), ("/grpc", "shop", "grpc")],
    );
    let d = derive(&[ing]);
    assert_eq!(d.config().routes.len(), 1);
    assert_eq!(d.config().routes[0].paths[0].path, "/");
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].severity, Severity::Warning);
    assert!(
        d.problems[0].message.contains("\"/grpc\""),
        "{:?}",
        d.problems
    );
}

#[test]
fn lost_member_is_unknown_and_keeps_its_last_endpoints() {
    let mut ms = two_members();
    ms[1].contact = Contact::Lost;
    let shop = [shop_on_port("80")];
    let d = derive_config(&shop, &ms, &DeriveOptions::default()).unwrap();
    assert_eq!(d.config().clusters[1].state, ClusterState::Unknown);
    assert_eq!(d.config().routes[0].backends[1].ready, Some(1));
    ms[1] = member("hz-b", Contact::Never, &[], vec![]);
    let d = derive_config(&shop, &ms, &DeriveOptions::default()).unwrap();
    assert_eq!(d.config().clusters[1].state, ClusterState::Unknown);
    assert_eq!(d.config().routes[0].backends[1].ready, None);
}

#[test]
fn cluster_weights_name_every_member() {
    let ings = [ingress(
        "shop",
        "2025-01-01T00:00:00Z",
        &[("fleetgate.io/cluster-weights", "hz-a=80")],
        "/",
        "shop",
        "80",
    )];
    let w: Vec<_> = derive(&ings).config().routes[0]
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(w, vec![Some(80), Some(0)]);
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
    let d = derive(&ings);
    assert_eq!(d.config().routes[0].mode, Mode::ActiveStandby);
    assert_eq!(d.config().routes[0].order, vec!["hz-b", "hz-a"]);
}

#[test]
fn other_classes_are_not_ours() {
    let mut i = shop_on_port("80");
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

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-02T00:00:00Z";
const T2: &str = "2025-01-03T00:00:00Z";

fn canary(name: &str, ts: &str, annos: &[(&str, &str)], path: &str) -> Ingress {
    let mut a = vec![("higress.io/canary", "true")];
    a.extend_from_slice(annos);
    ingress(name, ts, &a, path, "shop-v2", "80")
}

/// What one row of the blast-radius table expects.
struct Row {
    what: &'static str,
    ingresses: Vec<Ingress>,
    /// Route names served, each with its canaries.
    routes: &'static [(&'static str, &'static [&'static str])],
    /// (Ingress name, severity) of every problem.
    problems: &'static [(&'static str, Severity)],
}

#[test]
fn each_bad_object_affects_only_itself() {
    let base = || ingress("shop", T0, &[], "/", "shop", "80");
    let good_canary = || {
        canary(
            "v2",
            T1,
            &[("higress.io/canary-by-header", "x-canary")],
            "/",
        )
    };
    let rows = vec![
        Row {
            what: "a canary with a bad header pattern loses only the canary",
            ingresses: vec![
                base(),
                canary(
                    "bad-pattern",
                    T1,
                    &[
                        ("higress.io/canary-by-header", "x-canary"),
                        ("higress.io/canary-by-header-pattern", "(unclosed"),
                    ],
                    "/",
                ),
            ],
            routes: &[("default/shop", &[])],
            problems: &[("bad-pattern", Severity::Rejected)],
        },
        Row {
            what: "a canary with an invalid annotation value loses only the canary",
            ingresses: vec![
                base(),
                good_canary(),
                canary(
                    "bad-weight",
                    T2,
                    &[("higress.io/canary-weight", "ten")],
                    "/",
                ),
            ],
            routes: &[("default/shop", &["default/v2"])],
            problems: &[("bad-weight", Severity::Rejected)],
        },
        Row {
            what: "a bad base rejects its own paths and orphans its canaries",
            ingresses: vec![
                ingress(
                    "shop",
                    T0,
                    &[("fleetgate.io/mode", "hot-hot")],
                    "/",
                    "shop",
                    "80",
                ),
                ingress("api", T0, &[], "/api", "shop", "80"),
                good_canary(),
            ],
            routes: &[("default/api", &[])],
            problems: &[("shop", Severity::Rejected), ("v2", Severity::Warning)],
        },
        Row {
            what: "a host/path clash drops only the clashing path of the newer Ingress",
            ingresses: vec![
                base(),
                ingress_paths(
                    "newer",
                    T1,
                    &[],
                    &[("/", "shop", "80"), ("/new", "shop", "80")],
                ),
            ],
            routes: &[("default/newer", &[]), ("default/shop", &[])],
            problems: &[("newer", Severity::Warning)],
        },
        Row {
            what: "a bad path drops only that path",
            ingresses: vec![ingress_paths(
                "shop",
                T0,
                &[],
                &[("/", "shop", "80"), ("/x", "shop", "0")],
            )],
            routes: &[("default/shop", &[])],
            problems: &[("shop", Severity::Warning)],
        },
        Row {
            what: "a cluster that is not a member rejects only that Ingress",
            ingresses: vec![
                base(),
                ingress(
                    "api",
                    T0,
                    &[("fleetgate.io/cluster-order", "hz-a,hz-z")],
                    "/api",
                    "shop",
                    "80",
                ),
            ],
            routes: &[("default/shop", &[])],
            problems: &[("api", Severity::Rejected)],
        },
        Row {
            what: "unsupported annotations are one warning, the Ingress is served",
            ingresses: vec![ingress(
                "shop",
                T0,
                &[
                    ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
                    ("higress.io/canary-by-query", "beta"),
                    ("fleetgate.io/cluster-wieghts", "hz-a=1"),
                ],
                "/",
                "shop",
                "80",
            )],
            routes: &[("default/shop", &[])],
            problems: &[("shop", Severity::Warning)],
        },
    ];
    for row in rows {
        let d = derive(&row.ingresses);
        let routes: Vec<(String, Vec<String>)> = d
            .config()
            .routes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.canaries.iter().map(|c| c.name.clone()).collect(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<String>)> = row
            .routes
            .iter()
            .map(|(n, cs)| (n.to_string(), cs.iter().map(|c| c.to_string()).collect()))
            .collect();
        assert_eq!(routes, want, "{}: {:?}", row.what, d.problems);
        let mut seen: Vec<(String, Severity)> = d
            .problems
            .iter()
            .map(|p| (p.ingress.name.clone(), p.severity))
            .collect();
        seen.sort();
        let mut want: Vec<(String, Severity)> = row
            .problems
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        want.sort();
        assert_eq!(seen, want, "{}: {:?}", row.what, d.problems);
    }
}

#[test]
fn an_ingress_edited_into_an_invalid_state_keeps_its_last_good_routes() {
    let members = two_members();
    let opts = DeriveOptions::default();
    let mut deriver = Deriver::default();
    let good = ingress(
        "shop",
        T0,
        &[("fleetgate.io/cluster-weights", "hz-a=70,hz-b=30")],
        "/",
        "shop",
        "80",
    );
    let first = deriver
        .derive(&[Arc::new(good.clone())], &members, &opts)
        .unwrap();
    assert!(first.problems.is_empty());

    let mut typo = ingress(
        "shop",
        T0,
        &[("fleetgate.io/cluster-weights", "hz-a=70,hz-b")],
        "/",
        "shop",
        "80",
    );
    typo.metadata.generation = Some(2);
    let d = deriver
        .derive(&[Arc::new(typo.clone())], &members, &opts)
        .unwrap();
    assert_eq!(
        d.config().routes,
        first.config().routes,
        "the last good version is served"
    );
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].severity, Severity::Stale);
    assert!(
        d.problems[0].message.contains("cluster-weights"),
        "{}",
        d.problems[0].message
    );
    assert!(
        d.problems[0].message.contains("generation 1"),
        "{}",
        d.problems[0].message
    );

    // Endpoint changes still reach the last good routes.
    let mut fewer = members.clone();
    fewer[1] = member(
        "hz-b",
        Contact::Live,
        &["shop"],
        vec![slice("shop", &[Some(false)])],
    );
    let d = deriver
        .derive(&[Arc::new(typo.clone())], &fewer, &opts)
        .unwrap();
    assert_eq!(d.config().routes[0].backends[1].ready, Some(0));

    // Without memory (or for a re-created object) the invalid version is rejected.
    assert!(matches!(
        derive_config(&[typo.clone()], &members, &opts),
        Err(DeriveError::NoRoutes(_))
    ));
    let mut recreated = typo;
    recreated.metadata.uid = Some("another".into());
    assert!(deriver
        .derive(&[Arc::new(recreated)], &members, &opts)
        .is_err());
}

#[test]
fn higress_canary_weights_above_the_total_send_everything_to_the_canary() {
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        canary("v2", T1, &[("higress.io/canary-weight", "150")], "/"),
    ];
    let d = derive(&ings);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let r = &d.plugin().unwrap().routes[0];
    assert_eq!(r.canary_percent, vec![100]);
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        canary(
            "v2",
            T1,
            &[
                ("higress.io/canary-weight", "30"),
                ("higress.io/canary-weight-total", "20"),
            ],
            "/",
        ),
    ];
    assert_eq!(
        derive(&ings).plugin().unwrap().routes[0].canary_percent,
        vec![100]
    );
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        canary(
            "v2",
            T1,
            &[
                ("higress.io/canary-weight", "30"),
                ("higress.io/canary-weight-total", "200"),
            ],
            "/",
        ),
    ];
    assert_eq!(
        derive(&ings).plugin().unwrap().routes[0].canary_percent,
        vec![15]
    );
}

#[test]
fn mse_query_and_cookie_value_canaries_become_conditions() {
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        canary(
            "q",
            T1,
            &[
                ("mse.ingress.kubernetes.io/canary-by-query", "beta"),
                ("mse.ingress.kubernetes.io/canary-by-query-value", "on"),
            ],
            "/",
        ),
        canary(
            "c",
            T2,
            &[
                ("nginx.ingress.kubernetes.io/canary-by-cookie", "stage"),
                ("mse.ingress.kubernetes.io/canary-by-cookie-value", "gray"),
            ],
            "/",
        ),
    ];
    let d = derive(&ings);
    let cs = &d.config().routes[0].canaries;
    assert_eq!(cs[0].when[0].query.as_deref(), Some("beta"));
    assert_eq!(cs[0].when[0].matcher, MatchV1::Regex("always|on".into()));
    assert_eq!(cs[1].when[0].cookie.as_deref(), Some("stage"));
    assert_eq!(cs[1].when[0].matcher, MatchV1::Exact("gray".into()));
}

#[test]
fn mirror_port_defaults_to_the_mirror_services_first_port_and_fqdn_wins() {
    let mirror = |annos: &[(&str, &str)]| {
        let d = derive(&[ingress("shop", T0, annos, "/", "shop", "80")]);
        (
            d.config().routes[0]
                .mirror
                .as_ref()
                .map(|m| m.upstream.clone()),
            d.problems,
        )
    };
    let (m, _) = mirror(&[("higress.io/mirror-target-service", "shop-v2")]);
    assert_eq!(
        m.as_deref(),
        Some("outbound|80||shop-v2.default.svc.cluster.local")
    );
    let (m, _) = mirror(&[
        ("higress.io/mirror-target-service", "shop-v2"),
        ("higress.io/mirror-target-fqdn", "shadow.example.net"),
        ("higress.io/mirror-target-fqdn-port", "8443"),
    ]);
    assert_eq!(m.as_deref(), Some("outbound|8443||shadow.example.net"));
    // Higress ignores a mirror Service that does not exist; so do we, with a warning.
    let (m, problems) = mirror(&[("higress.io/mirror-target-service", "nowhere")]);
    assert_eq!(m, None);
    assert_eq!(problems[0].severity, Severity::Warning);
}

#[test]
fn header_never_is_not_the_canary_because_header_canaries_have_no_weight() {
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        canary(
            "v2",
            T1,
            &[
                ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
                ("nginx.ingress.kubernetes.io/canary-weight", "100"),
            ],
            "/",
        ),
    ];
    let d = derive(&ings);
    let cfg = &d.plugin().unwrap();
    let pick = |v: &str| {
        let req = fleetgate_plugin::request::SimpleRequest::new("shop.example.com", "/")
            .with_header("x-canary", v);
        let mut rng = fastrand::Rng::with_seed(1);
        let dec = fleetgate_plugin::decide::select(cfg, &req, |_| Default::default(), 0, &mut rng)
            .unwrap();
        dec.target.unwrap().canary.is_some()
    };
    assert!(pick("always"));
    for _ in 0..50 {
        assert!(!pick("never"));
    }
}

#[test]
fn settings_and_when_unavailable_reach_the_config() {
    let mut opts = DeriveOptions::default();
    opts.settings.cluster_header = "x-gw".into();
    opts.settings.when_unavailable = fleetgate_plugin::config::WhenUnavailable::Panic;
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        ingress(
            "api",
            T0,
            &[("fleetgate.io/when-unavailable", "reject")],
            "/api",
            "shop",
            "80",
        ),
    ];
    let d = derive_config(&ings, &two_members(), &opts).unwrap();
    assert_eq!(d.config().cluster_header, "x-gw");
    let wu: Vec<_> = d
        .config()
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.when_unavailable))
        .collect();
    use fleetgate_plugin::config::WhenUnavailable::*;
    assert_eq!(wu, vec![("default/api", Reject), ("default/shop", Panic)]);
}

#[test]
fn default_backend_is_the_routes_fallback_when_no_cluster_can_serve() {
    let ings = [ingress(
        "shop",
        T0,
        &[("nginx.ingress.kubernetes.io/default-backend", "shop-v2")],
        "/",
        "shop",
        "80",
    )];
    // shop has no ready endpoint anywhere; shop-v2 (first port 80) has one in each member.
    let svcs = ["shop", "shop-v2"];
    let members: Vec<MemberSnapshot> = ["hz-a", "hz-b"]
        .iter()
        .map(|id| {
            let slices = vec![
                slice("shop", &[Some(false)]),
                slice("shop-v2", &[Some(true)]),
            ];
            member(id, Contact::Live, &svcs, slices)
        })
        .collect();
    let d = derive_config(&ings, &members, &DeriveOptions::default()).unwrap();
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let f = d.config().routes[0].fallback.as_ref().expect("fallback");
    assert_eq!(f.name, "default/shop-v2");
    assert_eq!(
        f.backends[0].upstream,
        "outbound|80|hz-a|shop-v2.default.svc.cluster.local"
    );
    let req = fleetgate_plugin::request::SimpleRequest::new("shop.example.com", "/");
    let mut rng = fastrand::Rng::with_seed(3);
    let dec = fleetgate_plugin::decide::select(
        &d.plugin().unwrap(),
        &req,
        |_| Default::default(),
        0,
        &mut rng,
    )
    .unwrap();
    let t = dec.target.expect("served by the fallback");
    assert_eq!(t.reason, fleetgate_plugin::decide::Reason::Fallback);
    // A default-backend Service no member has: warning, no fallback, the route still served.
    let ings = [ingress(
        "shop",
        T0,
        &[("higress.io/default-backend", "nowhere")],
        "/",
        "shop",
        "80",
    )];
    let d = derive(&ings);
    assert!(d.config().routes[0].fallback.is_none());
    assert_eq!(d.problems[0].severity, Severity::Warning);
}

/// The incremental deriver must publish exactly what a fresh derivation of the same inputs
/// publishes, whatever the sequence of changes (Ingress edits, canaries, invalid edits,
/// endpoint changes, members losing contact or leaving).
/// Live members `ids`, each with `shop` (2 ready endpoints) and `shop-v2` (1).
fn shop_and_v2(ids: &[&str]) -> Vec<MemberSnapshot> {
    let slices = || {
        vec![
            slice("shop", &[Some(true); 2]),
            slice("shop-v2", &[Some(true)]),
        ]
    };
    (ids.iter())
        .map(|id| member(id, Contact::Live, &["shop", "shop-v2"], slices()))
        .collect()
}

#[test]
fn incremental_derivation_equals_a_fresh_one_after_any_change() {
    let mut rng = fastrand::Rng::with_seed(42);
    let ids = ["hz-a", "hz-b", "hz-c"];
    let svcs = ["shop", "shop-v2"];
    let mut members = shop_and_v2(&ids);
    let mut ingresses: Vec<Arc<Ingress>> = (0..6)
        .map(|i| {
            Arc::new(ingress(
                &format!("app{i}"),
                T0,
                &[],
                &format!("/p{i}"),
                "shop",
                "80",
            ))
        })
        .collect();
    let opts = DeriveOptions::default();
    let mut deriver = Deriver::default();
    // What a fresh derivation must see: each invalid edit replaced by its last good version.
    let mut good: HashMap<String, Arc<Ingress>> = HashMap::new();
    let name_of = |i: &Arc<Ingress>| i.metadata.name.clone().unwrap_or_default();
    for i in &ingresses {
        good.insert(name_of(i), Arc::clone(i));
    }
    for step in 0..300 {
        let i = rng.usize(0..ingresses.len());
        let name = name_of(&ingresses[i]);
        let path = format!(
            "/p{}",
            name.trim_start_matches(|c: char| !c.is_ascii_digit())
        );
        let is_base = name.starts_with("app");
        match rng.u8(0..6) {
            0 => {
                let m = rng.usize(0..members.len());
                let ready: Vec<Option<bool>> =
                    (0..rng.usize(0..4)).map(|_| Some(rng.bool())).collect();
                let svc = svcs[rng.usize(0..2)];
                Arc::make_mut(&mut members[m].index).apply_slice(&slice(svc, &ready));
            }
            1 if is_base => {
                let weights = format!("hz-a={},hz-b={}", rng.u32(1..5), rng.u32(0..5));
                let annos = [("fleetgate.io/cluster-weights", weights.as_str())];
                let mut ing = ingress(&name, T0, &annos, &path, "shop", "80");
                ing.metadata.generation = Some(step);
                ingresses[i] = Arc::new(ing);
                good.insert(name, Arc::clone(&ingresses[i]));
            }
            2 if is_base => {
                // An invalid edit: its last good version keeps serving.
                let annos = [("fleetgate.io/mode", "hot-hot")];
                ingresses[i] = Arc::new(ingress(&name, T0, &annos, &path, "shop", "80"));
            }
            3 => {
                let w = rng.u32(0..150).to_string();
                let annos = [("higress.io/canary-weight", w.as_str())];
                let c = Arc::new(canary(
                    &format!("c{step}"),
                    T1,
                    &annos,
                    &format!("/p{}", rng.usize(0..6)),
                ));
                good.insert(name_of(&c), Arc::clone(&c));
                ingresses.push(c);
            }
            4 if ingresses.len() > 3 => {
                good.remove(&name);
                ingresses.remove(i);
            }
            _ => {
                let m = rng.usize(0..members.len());
                members[m].contact = [Contact::Live, Contact::Lost][rng.usize(0..2)];
            }
        }
        let incremental = deriver.derive(&ingresses, &members, &opts);
        let plain: Vec<Ingress> = ingresses
            .iter()
            .map(|i| (**good.get(&name_of(i)).unwrap_or(i)).clone())
            .collect();
        let fresh = derive_config(&plain, &members, &opts);
        match (incremental, fresh) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.json, b.json, "step {step}");
                let not_stale = |d: &Derived| -> Vec<Problem> {
                    d.problems
                        .iter()
                        .filter(|p| p.severity != Severity::Stale)
                        .cloned()
                        .collect()
                };
                assert_eq!(not_stale(&a), not_stale(&b), "step {step}");
                a.plugin().unwrap_or_else(|e| panic!("step {step}: {e}"));
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!(
                "step {step}: {:?} vs {:?}",
                a.map(|d| d.revision),
                b.map(|d| d.revision)
            ),
        }
    }
}

#[test]
fn ready_by_member_counts_each_upstream_once() {
    // Two Ingresses on the same Service port: its endpoints are counted once per member.
    let ings = [
        ingress("shop", T0, &[], "/", "shop", "80"),
        ingress("api", T0, &[], "/api", "shop", "80"),
        ingress("v2", T0, &[], "/v2", "shop-v2", "80"),
    ];
    assert_eq!(derive(&ings).ready_by_member(), vec![2 + 1, 1 + 1]);
}

#[test]
fn a_ready_count_changes_the_state_not_the_routes_revision() {
    let shop = [shop_on_port("80")];
    let d1 = derive_config(&shop, &two_members(), &DeriveOptions::default()).unwrap();
    let mut ms = two_members();
    ms[1] = member(
        "hz-b",
        Contact::Live,
        &["shop"],
        vec![slice("shop", &[Some(true); 3])],
    );
    let d2 = derive_config(&shop, &ms, &DeriveOptions::default()).unwrap();
    assert_ne!(d1.revision, d2.revision, "the full config changed");
    assert_eq!(d1.split.routes_revision, d2.split.routes_revision);
    assert_ne!(d1.split.state.revision, d2.split.state.revision);
    // The state document is the config's state, in the plugin's slot order, and applies to
    // the plugin's own reading of the routes.
    let state = &d2.split.state;
    assert_eq!(state.routes_revision, d2.split.routes_revision);
    assert_eq!(state.ready.route(0), ready(&d2).as_slice());
    assert_eq!(state.ready.route(0), [Some(2), Some(3)]);
    let mut routes = (*d1.plugin().unwrap()).clone();
    routes.routes_revision = Some(d1.split.routes_revision.clone());
    let applied = routes.with_state(state).unwrap();
    assert_eq!(applied.backends, d2.plugin().unwrap().backends);
    let doc: fleetgate_plugin::config::StateV1 = serde_json::from_slice(&d2.split.json).unwrap();
    assert_eq!(&doc, state);
    // The routes themselves changing (another path) moves the routes revision.
    let annotated = [ingress(
        "shop",
        "2025-01-01T00:00:00Z",
        &[],
        "/api",
        "shop",
        "80",
    )];
    let d4 = derive_config(&annotated, &ms, &DeriveOptions::default()).unwrap();
    assert_ne!(d4.split.routes_revision, d2.split.routes_revision);
}

#[test]
fn the_last_ingress_deleted_is_an_empty_config_but_an_unusable_one_keeps_the_last() {
    let mut deriver = Deriver::default();
    let opts = DeriveOptions::default();
    let d = deriver
        .derive(&[Arc::new(shop_on_port("80"))], &two_members(), &opts)
        .unwrap();
    assert_eq!(d.route_count(), 1);
    // Deleted: nothing of ours is left, so nothing is routed (not the deleted routes kept).
    let empty = deriver.derive(&[], &two_members(), &opts).unwrap();
    assert_eq!((empty.route_count(), empty.problems.len()), (0, 0));
    assert_ne!(empty.revision, d.revision);
    assert!(empty.plugin().unwrap().routes.is_empty());
    // An Ingress of ours that cannot be used (a bad annotation): the last config stays.
    let weights = [("fleetgate.io/cluster-weights", "hz-a=70,hz-b")];
    let typo = ingress("shop", T0, &weights, "/", "shop", "80");
    let unusable = derive_config(&[typo], &two_members(), &opts);
    assert!(matches!(unusable, Err(DeriveError::NoRoutes(_))));
}

/// A Gateway of class `fleetgate` (ours) whose one listener takes routes from any namespace.
fn gateway_objects() -> crate::gateway_api::Objects {
    let class = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "fleetgate"}, "spec": {"controllerName": crate::gateway_api::CONTROLLER_NAME}});
    let gateway = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "fleet", "namespace": "default"},
        "spec": {"gatewayClassName": "fleetgate", "listeners": [{"name": "http", "port": 80,
            "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}});
    crate::gateway_api::Objects {
        classes: vec![serde_json::from_value(class).unwrap()],
        gateways: vec![serde_json::from_value(gateway).unwrap()],
        ..Default::default()
    }
}

/// HTTPRoute `name` (version `rv`) on shop.example.com: `path` to `shop` (weight `w`) and
/// `shop-v2`, and the same path for POST to `shop-v2` alone.
fn http_route(
    name: &str,
    rv: u64,
    path: &str,
    w: u32,
) -> ::gateway_api::apis::standard::httproutes::HttpRoute {
    let v = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": rv.to_string(), "creationTimestamp": T1},
        "spec": {"parentRefs": [{"name": "fleet"}], "hostnames": ["shop.example.com"], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
             "backendRefs": [{"name": "shop", "port": 80, "weight": w},
                             {"name": "shop-v2", "port": 80, "weight": 1}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": path}, "method": "POST"}],
             "backendRefs": [{"name": "shop-v2", "port": 80}]}]}});
    serde_json::from_value(v).unwrap()
}

/// HTTPRoutes are cached per object: after any change (endpoints, an HTTPRoute edited, added
/// or deleted, an Ingress taking a path an HTTPRoute also names, a member's contact) the
/// remembering deriver gives exactly what a fresh one gives, config and route status alike.
#[test]
fn incremental_httproute_derivation_equals_a_fresh_one_after_any_change() {
    let mut rng = fastrand::Rng::with_seed(7);
    let svcs = ["shop", "shop-v2"];
    let mut members = shop_and_v2(&["hz-a", "hz-b"]);
    let mut objects = gateway_objects();
    objects.http_routes = (0..4)
        .map(|i| http_route(&format!("r{i}"), 1, &format!("/p{i}"), 3))
        .collect();
    let mut ingresses: Vec<Arc<Ingress>> = Vec::new();
    let (opts, labels) = (DeriveOptions::default(), BTreeMap::new());
    let mut deriver = Deriver::default();
    for step in 0..200u64 {
        let n = objects.http_routes.len();
        match rng.u8(0..6) {
            0 => {
                let m = rng.usize(0..members.len());
                let ready: Vec<Option<bool>> =
                    (0..rng.usize(0..4)).map(|_| Some(rng.bool())).collect();
                Arc::make_mut(&mut members[m].index)
                    .apply_slice(&slice(svcs[rng.usize(0..2)], &ready));
            }
            1 if n > 0 => {
                let i = rng.usize(0..n);
                let name = objects.http_routes[i]
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_default();
                let path = format!("/p{}", rng.usize(0..6));
                objects.http_routes[i] = http_route(&name, 100 + step, &path, rng.u32(0..4));
            }
            2 => objects.http_routes.push(http_route(
                &format!("n{step}"),
                1,
                &format!("/p{}", rng.usize(0..6)),
                1,
            )),
            3 if n > 1 => {
                objects.http_routes.remove(rng.usize(0..n));
            }
            4 => {
                let path = format!("/p{}", rng.usize(0..6));
                ingresses = vec![Arc::new(ingress("app", T0, &[], &path, "shop", "80"))];
            }
            _ => {
                let m = rng.usize(0..members.len());
                members[m].contact = [Contact::Live, Contact::Lost][rng.usize(0..2)];
            }
        }
        let g = GatewayInputs {
            objects: &objects,
            namespaces: &labels,
            address: None,
        };
        let incremental = deriver
            .derive_with(&ingresses, Some(g), &members, &opts)
            .unwrap();
        let fresh = Deriver::default()
            .derive_with(&ingresses, Some(g), &members, &opts)
            .unwrap();
        assert_eq!(incremental.json, fresh.json, "step {step}");
        assert_eq!(incremental.gateway_api, fresh.gateway_api, "step {step}");
        incremental
            .plugin()
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
    }
}

/// Bad input: an HTTPRoute of 1,000 rules, one with a filter fleetgate cannot apply. Every
/// rule is routed, the bad one answers 500, the status names exactly that rule, and another
/// HTTPRoute is untouched.
#[test]
fn an_httproute_of_1000_rules_with_one_bad_rule_serves_the_rest_and_names_it() {
    let members: Vec<MemberSnapshot> = ["hz-a", "hz-b"]
        .iter()
        .map(|id| {
            member(
                id,
                Contact::Live,
                &["shop"],
                vec![slice("shop", &[Some(true)])],
            )
        })
        .collect();
    let rule = |i: usize| {
        let filters = match i {
            517 => serde_json::json!([{"type": "ExtensionRef",
                "extensionRef": {"group": "example.io", "kind": "Auth", "name": "x"}}]),
            _ => serde_json::json!([]),
        };
        serde_json::json!({"matches": [{"path": {"type": "PathPrefix", "value": format!("/r{i}")}}],
            "filters": filters, "backendRefs": [{"name": "shop", "port": 80}]})
    };
    let mut big = http_route("big", 1, "/", 1);
    big.spec.rules = Some(
        (0..1000)
            .map(|i| serde_json::from_value(rule(i)).unwrap())
            .collect(),
    );
    let mut objects = gateway_objects();
    objects.http_routes = vec![big, http_route("other", 1, "/other", 1)];
    let labels = BTreeMap::new();
    let g = GatewayInputs {
        objects: &objects,
        namespaces: &labels,
        address: None,
    };
    let d = Deriver::default()
        .derive_with(&[], Some(g), &members, &DeriveOptions::default())
        .unwrap();
    let cfg = d.plugin().unwrap();
    let direct: Vec<&str> = (cfg.routes.iter())
        .filter(|r| r.name.starts_with("default/big/") && r.filters.direct.is_some())
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(direct, ["default/big/rule517/match0"]);
    let big_routes = cfg
        .routes
        .iter()
        .filter(|r| r.name.starts_with("default/big/"))
        .count();
    assert_eq!(big_routes, 1000);
    let outcome = d.gateway_api.unwrap();
    let parent = |name: &str| {
        let r = outcome
            .routes
            .iter()
            .find(|r| r.route.name == name)
            .unwrap();
        r.parents[0].clone()
    };
    let p = parent("big").partially_invalid.expect("PartiallyInvalid");
    assert!(
        p.message.starts_with("rule 517: ") && p.message.contains("ExtensionRef"),
        "{p:?}"
    );
    assert!(parent("other").partially_invalid.is_none() && parent("other").accepted.status);
    let other = cfg
        .routes
        .iter()
        .filter(|r| r.name.starts_with("default/other/"))
        .count();
    assert_eq!(other, 2, "both rules of the other HTTPRoute are routed");
}

/// Derive with the remembering `deriver` and with a fresh one: both must give the same
/// config and Gateway API outcome (`what`: the step, for the message). The fresh result.
fn as_fresh(
    deriver: &mut Deriver,
    g: GatewayInputs<'_>,
    members: &[MemberSnapshot],
    what: &str,
) -> Derived {
    let opts = DeriveOptions::default();
    let incremental = deriver.derive_with(&[], Some(g), members, &opts).unwrap();
    let fresh = Deriver::default()
        .derive_with(&[], Some(g), members, &opts)
        .unwrap();
    assert_eq!(incremental.json, fresh.json, "{what}");
    assert_eq!(incremental.gateway_api, fresh.gateway_api, "{what}");
    fresh
}

/// A backendRef to a Service no member has answers 500 for its share; when the Service
/// appears in a member, the remembering deriver routes to it as a fresh one does (the cache
/// follows every Service a route names, resolved or not, mirrors included).
#[test]
fn a_missing_backend_that_appears_is_routed_by_the_remembering_deriver() {
    let mut members = shop_and_v2(&["hz-a", "hz-b"]);
    let mut route = http_route("r", 1, "/p", 1);
    let rule: serde_json::Value = serde_json::json!({
        "matches": [{"path": {"type": "PathPrefix", "value": "/p"}}],
        "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 80}}}],
        "backendRefs": [{"name": "shop", "port": 80}, {"name": "shop-v3", "port": 80}]});
    route.spec.rules = Some(vec![serde_json::from_value(rule).unwrap()]);
    let mut objects = gateway_objects();
    objects.http_routes = vec![route];
    let (opts, labels) = (DeriveOptions::default(), BTreeMap::new());
    let g = GatewayInputs {
        objects: &objects,
        namespaces: &labels,
        address: None,
    };
    let mut deriver = Deriver::default();
    let before = deriver.derive_with(&[], Some(g), &members, &opts).unwrap();
    assert!(
        before.config().routes.iter().all(|r| r.mirror.is_none()),
        "no shadow yet"
    );
    for svc in ["shop-v3", "shadow"] {
        let index = Arc::make_mut(&mut members[1].index);
        index.apply_service(&service(svc));
        index.apply_slice(&slice(svc, &[Some(true)]));
        as_fresh(&mut deriver, g, &members, &format!("after {svc} appeared"));
    }
    let after = deriver.derive_with(&[], Some(g), &members, &opts).unwrap();
    let r = &after.config().routes[0];
    assert!(
        r.canaries
            .iter()
            .any(|c| c.direct.is_none() && c.name.contains("shop-v3")),
        "{r:?}"
    );
    assert!(r.mirror.is_some(), "{r:?}");
}

/// HTTPRoute `r` of namespace `team` on shop.example.com and www.shop.io, to `shop` and `late`
/// of `default` (cross-namespace: a ReferenceGrant must allow them), never edited.
fn team_route() -> ::gateway_api::apis::standard::httproutes::HttpRoute {
    let mut r = http_route("r", 1, "/p", 1);
    r.metadata.namespace = Some("team".into());
    if let Some(p) = r.spec.parent_refs.iter_mut().flatten().next() {
        p.namespace = Some("default".into());
    }
    r.spec.hostnames = Some(vec!["shop.example.com".into(), "www.shop.io".into()]);
    let rule = serde_json::json!({"matches": [{"path": {"type": "PathPrefix", "value": "/p"}}],
        "backendRefs": [{"name": "shop", "namespace": "default", "port": 80},
                        {"name": "late", "namespace": "default", "port": 80}]});
    r.spec.rules = Some(vec![serde_json::from_value(rule).unwrap()]);
    r
}

/// The Gateway `fleet`'s one listener taking routes `from` (`Selector`: namespaces labelled
/// `env=prod`), on `hostname` if any.
fn fleet_listener(
    from: &str,
    hostname: Option<&str>,
) -> ::gateway_api::apis::standard::gateways::Gateway {
    let mut l = serde_json::json!({"name": "http", "port": 80, "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": from,
            "selector": {"matchLabels": {"env": "prod"}}}}});
    if let Some(h) = hostname {
        l["hostname"] = h.into();
    }
    let g = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "fleet", "namespace": "default"},
        "spec": {"gatewayClassName": "fleetgate", "listeners": [l]}});
    serde_json::from_value(g).unwrap()
}

/// A route's evaluation and translation are remembered while what they read stays: the same
/// HTTPRoute (never edited) must follow a ReferenceGrant added, a Service it names appearing
/// and going away, its namespace's labels and the Gateway's listener changing, exactly as a
/// fresh derivation does.
#[test]
fn a_remembered_httproute_follows_grants_services_namespace_labels_and_listeners() {
    let mut members = shop_and_v2(&["hz-a", "hz-b"]);
    let mut objects = gateway_objects();
    objects.gateways = vec![fleet_listener("Selector", Some("*.example.com"))];
    objects.http_routes = vec![team_route()];
    let labels = |env: &str| {
        let l = BTreeMap::from([("env".to_string(), env.to_string())]);
        BTreeMap::from([("team".to_string(), l)])
    };
    let mut namespaces = labels("prod");
    let grant: ::gateway_api::apis::standard::referencegrants::ReferenceGrant =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "team", "namespace": "default"},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                "namespace": "team"}], "to": [{"group": "", "kind": "Service"}]}}))
        .unwrap();
    let mut deriver = Deriver::default();
    let mut last = None;
    for step in 0..7 {
        match step {
            0 => {}
            1 => objects.grants = vec![grant.clone()],
            2 => drop(Arc::make_mut(&mut members[1].index).apply_service(&service("late"))),
            3 => drop(Arc::make_mut(&mut members[1].index).delete_service(&service("late"))),
            4 => namespaces = labels("dev"),
            5 => objects.gateways = vec![fleet_listener("All", Some("*.example.com"))],
            _ => objects.gateways = vec![fleet_listener("All", None)],
        }
        let g = GatewayInputs {
            objects: &objects,
            namespaces: &namespaces,
            address: None,
        };
        let fresh = as_fresh(&mut deriver, g, &members, &format!("step {step}"));
        let now = (fresh.config().routes.clone(), fresh.gateway_api);
        assert_ne!(
            last.as_ref(),
            Some(&now),
            "step {step} changes what is derived"
        );
        last = Some(now);
    }
}

/// A dump may list one HTTPRoute twice: the second claims nothing the first has, and the
/// remembering deriver (which keeps each route's hosts while the claims before it stay) must
/// still agree with a fresh one after an endpoint change.
#[test]
fn an_httproute_listed_twice_is_claimed_as_a_fresh_deriver_claims_it() {
    let mut members = shop_and_v2(&["hz-a", "hz-b"]);
    let mut objects = gateway_objects();
    objects.http_routes = vec![http_route("r", 1, "/p", 1), http_route("r", 1, "/p", 1)];
    let labels = BTreeMap::new();
    let g = GatewayInputs {
        objects: &objects,
        namespaces: &labels,
        address: None,
    };
    let mut deriver = Deriver::default();
    for step in 0..2 {
        let index = Arc::make_mut(&mut members[0].index);
        index.apply_slice(&slice("shop", &vec![Some(true); 1 + 2 * step]));
        let fresh = as_fresh(&mut deriver, g, &members, &format!("step {step}"));
        assert_eq!(
            fresh.route_count(),
            2,
            "step {step}: the first one's two matches"
        );
    }
}

/// The remembered order of the HTTPRoutes by key follows a list that keeps its length but not
/// its order or its names.
#[test]
fn the_remembered_order_of_httproutes_follows_a_reordered_or_renamed_list() {
    let members = shop_and_v2(&["hz-a", "hz-b"]);
    let labels = BTreeMap::new();
    let mut objects = gateway_objects();
    let mut deriver = Deriver::default();
    let lists = [["b", "a"], ["a", "b"], ["c", "b"], ["b", "0"]];
    for (step, names) in lists.iter().enumerate() {
        objects.http_routes = (names.iter())
            .map(|n| http_route(n, 1, &format!("/{n}"), 1))
            .collect();
        let g = GatewayInputs {
            objects: &objects,
            namespaces: &labels,
            address: None,
        };
        as_fresh(&mut deriver, g, &members, &format!("step {step}"));
    }
}
