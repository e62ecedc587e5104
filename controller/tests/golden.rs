//! Golden tests: `render` over the fixtures in `examples/fleet/` must print exactly the
//! checked-in JSON in `tests/golden/` (reviewed by hand against the annotation semantics).
//! `UPDATE_GOLDEN=1 cargo test -p fleetgate-controller --test golden` rewrites them.

use std::path::{Path, PathBuf};

use fleetgate_controller::cli::{self, ExplainArgs, RenderArgs};
use fleetgate_controller::derive::{DeriveOptions, Severity};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render_args(scenario: &str, hz_b: &str) -> RenderArgs {
    let fleet = root().join("examples/fleet");
    RenderArgs {
        fleet: vec![fleet.join("clusters"), fleet.join(scenario)],
        members: vec![
            ("hz-a".to_string(), fleet.join("members/hz-a")),
            ("hz-b".to_string(), fleet.join("members").join(hz_b)),
        ],
        zones: Vec::new(),
        options: DeriveOptions::default(),
    }
}

/// (scenario, hz-b dump, expected problems as (ingress, severity)).
type Scenario = (
    &'static str,
    &'static str,
    &'static [(&'static str, Severity)],
);

const SCENARIOS: &[Scenario] = &[
    ("active-active", "hz-b", &[]),
    ("active-active-zero-replicas", "hz-b-scaled-to-zero", &[]),
    ("active-standby", "hz-b", &[]),
    ("header-to-cluster", "hz-b", &[]),
    ("canary-by-header", "hz-b", &[]),
    ("canary-by-weight", "hz-b", &[]),
    ("mirror", "hz-b", &[]),
    ("multi-port", "hz-b", &[]),
    ("gateway-api-routing", "hz-b", &[]),
    (
        "bad-annotation",
        "hz-b",
        &[("default/shop-api", Severity::Rejected)],
    ),
];

fn golden_path(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{scenario}.json"))
}

#[test]
fn render_matches_golden_files_and_the_plugin_accepts_them() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for (scenario, hz_b, problems) in SCENARIOS {
        let derived =
            cli::render(&render_args(scenario, hz_b)).unwrap_or_else(|e| panic!("{scenario}: {e}"));
        let got = cli::pretty(&derived).unwrap();
        fleetgate_plugin::config::parse(got.as_bytes())
            .unwrap_or_else(|e| panic!("{scenario}: plugin rejects the config: {e}"));
        let seen: Vec<(String, Severity)> = derived
            .problems
            .iter()
            .map(|p| (p.ingress.to_string(), p.severity))
            .collect();
        let want: Vec<(String, Severity)> =
            problems.iter().map(|(i, s)| (i.to_string(), *s)).collect();
        assert_eq!(seen, want, "{scenario}: problems {:?}", derived.problems);

        let path = golden_path(scenario);
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 to create)", path.display()));
        if want != got {
            mismatched.push(format!("{scenario}:\n--- want\n{want}\n--- got\n{got}"));
        }
    }
    assert!(
        mismatched.is_empty(),
        "golden mismatch:\n{}",
        mismatched.join("\n")
    );
}

#[test]
fn render_is_byte_stable() {
    for (scenario, hz_b, _) in SCENARIOS {
        let a = cli::pretty(&cli::render(&render_args(scenario, hz_b)).unwrap()).unwrap();
        let b = cli::pretty(&cli::render(&render_args(scenario, hz_b)).unwrap()).unwrap();
        assert_eq!(a, b, "{scenario}");
    }
}

fn simulate(scenario: &str, headers: &[(&str, &str)], n: u32) -> cli::Simulation {
    simulate_at(scenario, "shop.example.com", "/cart", headers, n)
}

fn simulate_at(
    scenario: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: u32,
) -> cli::Simulation {
    let args = ExplainArgs {
        config: golden_path(scenario),
        host: host.to_string(),
        path: path.to_string(),
        method: "GET".to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        simulate: Some(n),
        seed: 7,
        states: Vec::new(),
    };
    cli::simulate(&args, n).unwrap()
}

fn share(sim: &cli::Simulation, cluster: &str) -> f64 {
    let total: u64 = sim.clusters.values().sum();
    *sim.clusters.get(cluster).unwrap_or(&0) as f64 / total as f64
}

#[test]
fn active_active_splits_one_to_one_by_ready_endpoints() {
    let sim = simulate("active-active", &[], 10_000);
    assert!((share(&sim, "hz-a") - 0.5).abs() < 0.03, "{sim:?}");
}

#[test]
fn a_cluster_scaled_to_zero_gets_no_traffic() {
    let sim = simulate("active-active-zero-replicas", &[], 2_000);
    assert_eq!(share(&sim, "hz-a"), 1.0, "{sim:?}");
}

#[test]
fn active_standby_sends_everything_to_the_primary() {
    let sim = simulate("active-standby", &[], 2_000);
    assert_eq!(share(&sim, "hz-a"), 1.0, "{sim:?}");
}

#[test]
fn header_canary_pinned_to_a_cluster_goes_only_there() {
    for v in ["gray", "always"] {
        let sim = simulate("header-to-cluster", &[("x-stage", v)], 500);
        assert_eq!(share(&sim, "hz-b"), 1.0, "{v}: {sim:?}");
    }
    let sim = simulate("header-to-cluster", &[("x-fleetgate-cluster", "hz-a")], 500);
    assert_eq!(share(&sim, "hz-a"), 1.0, "{sim:?}");
}

/// Requests the simulation sent to the `shop-canary` service, in any cluster.
fn canary_hits(sim: &cli::Simulation) -> u64 {
    sim.upstreams
        .iter()
        .filter(|(k, _)| k.contains("shop-canary"))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn canary_by_header_matches_value_or_always_only() {
    let canary = "outbound|80|hz-a|shop-canary.default.svc.cluster.local";
    let sim = simulate("canary-by-header", &[("x-canary", "v2")], 1_000);
    let to_canary = canary_hits(&sim);
    assert_eq!(to_canary, 1_000, "{sim:?}");
    let sim = simulate("canary-by-header", &[("x-canary", "v3")], 1_000);
    assert!(!sim.upstreams.contains_key(canary), "{sim:?}");
}

#[test]
fn canary_by_weight_takes_about_twenty_percent() {
    let sim = simulate("canary-by-weight", &[], 20_000);
    let total: u64 = sim.upstreams.values().sum();
    let to_canary = canary_hits(&sim);
    let share = to_canary as f64 / total as f64;
    assert!((share - 0.2).abs() < 0.02, "{share} {sim:?}");
}

#[test]
fn deploy_manifests_parse_and_the_members_file_loads() {
    use serde::Deserialize;
    let deploy = root().join("examples/deploy");
    for f in ["base/controller.yaml", "member/member.yaml"] {
        let text = std::fs::read_to_string(deploy.join(f)).unwrap();
        let mut kinds = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{f}: {e}"));
            kinds.push(v["kind"].as_str().unwrap_or_default().to_string());
        }
        assert!(kinds.iter().all(|k| !k.is_empty()), "{f}: {kinds:?}");
    }
    let members = fleetgate_controller::members::from_file(&deploy.join("members.yaml")).unwrap();
    let ids: Vec<_> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["hz-a", "hz-b"]);
}

#[test]
fn multi_port_services_resolve_by_service_port_and_namespace() {
    // shop:80 (Service port; slices say 8080): 2 ready in each member -> 1:1.
    let sim = simulate_at("multi-port", "shop.example.com", "/", &[], 10_000);
    assert!((share(&sim, "hz-a") - 0.5).abs() < 0.03, "{sim:?}");
    assert!(
        sim.upstreams.keys().all(|u| u.starts_with("outbound|80|")),
        "{sim:?}"
    );
    // The named metrics port is Service port 9090 in the upstream name.
    let sim = simulate_at(
        "multi-port",
        "shop.example.com",
        "/metrics-probe",
        &[],
        1_000,
    );
    assert!(
        sim.upstreams
            .keys()
            .all(|u| u.starts_with("outbound|9090|")),
        "{sim:?}"
    );
    // staging/shop exists only in hz-a (hz-b has no such Service: 0 endpoints, not an error).
    let sim = simulate_at("multi-port", "staging.shop.example.com", "/", &[], 1_000);
    assert_eq!(share(&sim, "hz-a"), 1.0, "{sim:?}");
    assert!(
        sim.upstreams
            .keys()
            .all(|u| u.ends_with("shop.staging.svc.cluster.local")),
        "{sim:?}"
    );
}

#[test]
fn a_dual_stack_member_counts_pods_not_addresses() {
    let fleet = root().join("examples/fleet");
    let mut args = render_args("active-active", "hz-b");
    let single = cli::render(&args).unwrap();
    args.members[0].1 = fleet.join("members/hz-a-dual-stack");
    let dual = cli::render(&args).unwrap();
    let ready = |d: &fleetgate_controller::derive::Derived| -> Vec<Option<u32>> {
        d.config().routes[0]
            .backends
            .iter()
            .map(|b| b.ready)
            .collect()
    };
    assert_eq!(ready(&dual), ready(&single));
    assert_eq!(ready(&dual), vec![Some(2), Some(2)]);
}

#[test]
fn explain_what_if_a_cluster_dies_or_is_ejected() {
    for state in ["down", "ejected"] {
        let mut args = ExplainArgs {
            config: golden_path("active-active"),
            host: "shop.example.com".to_string(),
            path: "/".to_string(),
            method: "GET".to_string(),
            headers: Vec::new(),
            simulate: Some(1_000),
            seed: 7,
            states: vec![("hz-a".to_string(), state.to_string())],
        };
        let sim = cli::simulate(&args, 1_000).unwrap();
        assert_eq!(share(&sim, "hz-b"), 1.0, "{state}: {sim:?}");
        args.states.push(("hz-b".to_string(), state.to_string()));
        let sim = cli::simulate(&args, 100).unwrap();
        // Both gone: down -> 503 (reject); both ejected -> panic routing over both.
        match state {
            "down" => assert_eq!(sim.rejected, 100, "{sim:?}"),
            _ => assert_eq!(sim.clusters.values().sum::<u64>(), 100, "{sim:?}"),
        }
    }
}

/// `explain` on the Gateway API routing fixture: the spec's match precedence (exact path, then
/// method, then headers, then query; the older HTTPRoute on a tie; fallthrough when the tests
/// at a path fail), regex paths before prefixes, weights, redirects, rewrites, direct 500s and
/// a ServiceImport's clusters, each with the route and cluster chosen.
#[test]
fn explain_shows_the_route_and_cluster_chosen_for_httproute_requests() {
    let explain = |method: &str, host: &str, path: &str, headers: &[(&str, &str)]| {
        let args = ExplainArgs {
            config: golden_path("gateway-api-routing"),
            host: host.to_string(),
            path: path.to_string(),
            method: method.to_string(),
            headers: (headers.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            simulate: None,
            seed: 7,
            states: Vec::new(),
        };
        cli::explain(&args).unwrap()
    };
    let shop = "shop.example.com";
    let v2 = [("x-version", "two")];
    // (method, host, path, headers, the route chosen, a piece of its upstream)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a str,
    );
    let cases: [Case; 8] = [
        (
            "GET",
            shop,
            "/cart",
            &v2,
            "default/matching/rule0/match0",
            "|shop.default.",
        ),
        // Same headers, same path: the older HTTPRoute wins the tie.
        (
            "GET",
            shop,
            "/cart/items",
            &v2,
            "default/matching-older/rule0/match0",
            "|shop.default.",
        ),
        // A method match outranks header matches.
        (
            "POST",
            shop,
            "/cart/items",
            &v2,
            "default/matching/rule1/match1",
            "|shop-canary.",
        ),
        // The tests at /cart fail: the next shorter prefix.
        (
            "GET",
            shop,
            "/cart/items",
            &[],
            "default/matching/rule3/match1",
            "|shop.default.",
        ),
        (
            "GET",
            shop,
            "/x?debug=1",
            &[],
            "default/matching/rule2/match0",
            "|shop-shadow.",
        ),
        (
            "GET",
            shop,
            "/api/v2/users",
            &[],
            "default/matching/rule3/match0",
            "|shop.default.",
        ),
        (
            "GET",
            "imported.example.com",
            "/",
            &[],
            "default/imported/rule0/match0",
            "|hz-b|",
        ),
        (
            "GET",
            "split.example.com",
            "/",
            &[],
            "default/split/rule0/match0",
            "|hz-b|",
        ),
    ];
    for (method, host, path, headers, route, upstream) in cases {
        let e = explain(method, host, path, headers);
        let what = format!("{method} {host}{path} {headers:?}: {e:?}");
        assert_eq!(e.route.as_deref(), Some(route), "{what}");
        assert!(
            e.upstream.as_deref().unwrap_or("").contains(upstream),
            "{what}"
        );
    }
    let e = explain("GET", "filters.example.com", "/shop", &[]);
    let shadow = "outbound|8080||shop-shadow.default.svc.cluster.local";
    assert_eq!(e.mirror.as_deref(), Some(shadow), "RequestMirror: {e:?}");
    let e = explain("GET", "filters.example.com", "/old/page?x=1", &[]);
    let location = "301 location: https://filters.example.com/old/page?x=1";
    assert_eq!(e.answer.as_deref(), Some(location), "{e:?}");
    let e = explain("GET", "filters.example.com", "/v1/items", &[]);
    let forwarded = "forwarded as backend.example.com/v2/items";
    assert_eq!(e.answer.as_deref(), Some(forwarded), "{e:?}");
    for host in ["zero.example.com", "filters.example.com/limited"] {
        let (host, path) = host
            .split_once('/')
            .map_or((host, "/"), |(h, _)| (h, "/limited"));
        let e = explain("GET", host, path, &[]);
        assert_eq!(e.answer.as_deref(), Some("500"), "{host}{path}: {e:?}");
    }
}

/// A backendRef that does not resolve keeps its weight and answers 500 for its share; the
/// others split as weighted.
#[test]
fn httproute_weights_split_and_an_unresolved_share_answers_500() {
    let sim = simulate_at("gateway-api-routing", "split.example.com", "/", &[], 10_000);
    let canary = sim
        .upstreams
        .iter()
        .filter(|(u, _)| u.contains("|shop-canary."));
    let canary: u64 = canary.map(|(_, n)| n).sum();
    let (answered, total) = (sim.answered, 10_000f64);
    assert!((0.13..0.17).contains(&(canary as f64 / total)), "{sim:?}");
    assert!((0.04..0.06).contains(&(answered as f64 / total)), "{sim:?}");
    // Active-standby with hz-b first: the base Service is all on hz-b.
    let base = sim
        .upstreams
        .iter()
        .filter(|(u, _)| u.contains("|shop.default."));
    assert!(base.clone().all(|(u, _)| u.contains("|hz-b|")), "{sim:?}");
}

/// What the derivation says for the routes' status: a rule fleetgate cannot serve as written
/// makes the route `PartiallyInvalid` (reason `UnsupportedValue`, the filter named) while the
/// others stay served; a missing backend is `ResolvedRefs=False` / `BackendNotFound`.
#[test]
fn httproute_status_says_which_rules_are_not_served_and_which_refs_do_not_resolve() {
    let derived = cli::render(&render_args("gateway-api-routing", "hz-b")).unwrap();
    let outcome = derived
        .gateway_api
        .expect("Gateway API objects were derived");
    let parent = |name: &str| {
        let r = (outcome.routes.iter())
            .find(|r| r.route.name == name)
            .unwrap_or_else(|| panic!("no outcome for {name}"));
        r.parents[0].clone()
    };
    let filters = parent("filters");
    assert!(filters.accepted.status, "{filters:?}");
    let p = filters
        .partially_invalid
        .expect("filters is partially invalid");
    assert_eq!((p.status, p.reason.as_str()), (true, "UnsupportedValue"));
    assert!(
        p.message.contains("rule 3") && p.message.contains("ExtensionRef"),
        "{p:?}"
    );
    let split = parent("split");
    assert_eq!(split.resolved_refs.reason, "BackendNotFound", "{split:?}");
    assert!(split.partially_invalid.is_none(), "{split:?}");
    for name in ["matching", "matching-older", "imported", "zero"] {
        let p = parent(name);
        assert!(
            p.accepted.status && p.partially_invalid.is_none(),
            "{name}: {p:?}"
        );
    }
}
