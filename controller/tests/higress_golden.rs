//! `--higress` generation over the `kubectl get -o yaml` fixtures of `examples/fleet/`: the
//! generated objects must be exactly the YAML in `tests/golden/higress/` (reviewed by hand),
//! must pass the strict Kubernetes schema check, and must agree with the plugin config on every
//! upstream name. `UPDATE_GOLDEN=1 cargo test -p fleetgate-controller --test higress_golden`
//! rewrites the golden files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fleetgate_controller::cli::{self, RenderArgs};
use fleetgate_controller::derive::{DeriveOptions, Derived, MemberSnapshot};
use fleetgate_controller::higress::{
    self, ClusterName, Generated, HigressObject, HigressOptions, HIGRESS_UPSTREAM_TEMPLATE,
};
use serde_json::Value;

mod manifests;
use manifests::root;

/// (scenario, hz-a dump, hz-b dump): multi-port Services with named target ports, unready and
/// terminating endpoints, two namespaces, canaries, a mirror, a member scaled to zero, a
/// dual-stack member.
const SCENARIOS: &[(&str, &str, &str)] = &[
    ("active-active", "hz-a", "hz-b"),
    ("active-active-zero-replicas", "hz-a", "hz-b-scaled-to-zero"),
    ("canary-by-header", "hz-a", "hz-b"),
    ("mirror", "hz-a", "hz-b"),
    ("multi-port", "hz-a-dual-stack", "hz-b"),
];

fn options() -> HigressOptions {
    HigressOptions {
        namespaces: ["default", "staging", "fleetgate-system"]
            .map(String::from)
            .into(),
        ..HigressOptions::default()
    }
}

fn render(scenario: &str, hz_a: &str, hz_b: &str) -> (Derived, Vec<MemberSnapshot>) {
    let fleet = root().join("examples/fleet");
    let args = RenderArgs {
        fleet: vec![fleet.join("clusters"), fleet.join(scenario)],
        members: vec![
            ("hz-a".to_string(), fleet.join("members").join(hz_a)),
            ("hz-b".to_string(), fleet.join("members").join(hz_b)),
        ],
        zones: Vec::new(),
        options: DeriveOptions {
            upstream_template: HIGRESS_UPSTREAM_TEMPLATE.to_string(),
            ..DeriveOptions::default()
        },
    };
    cli::render_with_members(&args).expect(scenario)
}

fn generate(scenario: &str, hz_a: &str, hz_b: &str) -> (Derived, Generated) {
    let (derived, members) = render(scenario, hz_a, hz_b);
    let generated = higress::generate(&derived, &members, &options());
    (derived, generated)
}

fn as_json(o: &HigressObject) -> Value {
    serde_json::to_value(o).unwrap()
}

#[test]
fn generated_objects_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/higress");
    let mut mismatched = Vec::new();
    for (scenario, hz_a, hz_b) in SCENARIOS {
        let (_, generated) = generate(scenario, hz_a, hz_b);
        assert_eq!(generated.problems, Vec::<String>::new(), "{scenario}");
        let yaml = generated.to_yaml().unwrap();
        let path = dir.join(format!("{scenario}.yaml"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(&yaml) {
            mismatched.push(format!("{scenario}:\n{yaml}"));
        }
    }
    assert!(
        mismatched.is_empty(),
        "differs from golden:\n{}",
        mismatched.join("\n")
    );
}

/// Every upstream name a route's backends, canaries or fallback can choose.
fn config_upstreams(config: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in config["routes"].as_array().unwrap() {
        let canaries = r["canaries"].as_array().into_iter().flatten();
        let groups = [&r["backends"], &r["fallback"]["backends"]]
            .into_iter()
            .chain(canaries.map(|c| &c["backends"]));
        for b in groups.filter_map(Value::as_array).flatten() {
            out.insert(b["upstream"].as_str().unwrap().to_string());
        }
    }
    out
}

/// Higress's cluster name of every port of every generated Service.
fn service_clusters(g: &Generated) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for o in &g.objects {
        if let HigressObject::Service(s) = o {
            for p in s.spec.as_ref().unwrap().ports.as_ref().unwrap() {
                let c = ClusterName {
                    port: u16::try_from(p.port).unwrap(),
                    service: o.name().to_string(),
                    namespace: o.namespace().to_string(),
                };
                out.insert(c.to_string());
            }
        }
    }
    out
}

#[test]
fn every_plugin_upstream_is_the_cluster_of_a_generated_service_port() {
    for (scenario, hz_a, hz_b) in SCENARIOS {
        let (derived, generated) = generate(scenario, hz_a, hz_b);
        let config: Value = serde_json::from_slice(&derived.json).unwrap();
        let upstreams = config_upstreams(&config);
        assert!(upstreams.len() >= 2, "{scenario}: {upstreams:?}");
        let clusters = service_clusters(&generated);
        let missing: Vec<&String> = upstreams.difference(&clusters).collect();
        assert!(missing.is_empty(), "{scenario}: no Service for {missing:?}");
    }
}

#[test]
fn each_header_route_matches_the_cluster_name_of_its_own_backend() {
    let header = "higress.io/exact-match-header-x-fleetgate-upstream";
    let (derived, generated) = generate("canary-by-header", "hz-a", "hz-b");
    let config: Value = serde_json::from_slice(&derived.json).unwrap();
    let mut matched = BTreeSet::new();
    for o in generated.objects.iter().map(as_json) {
        let Some(value) = o["metadata"]["annotations"][header].as_str() else {
            continue;
        };
        for rule in o["spec"]["rules"].as_array().unwrap() {
            for p in rule["http"]["paths"].as_array().unwrap() {
                let svc = &p["backend"]["service"];
                let c = ClusterName {
                    port: svc["port"]["number"].as_u64().unwrap() as u16,
                    service: svc["name"].as_str().unwrap().to_string(),
                    namespace: o["metadata"]["namespace"].as_str().unwrap().to_string(),
                };
                assert_eq!(c.to_string(), value);
            }
        }
        matched.insert(value.to_string());
    }
    // Every upstream, canary members included, has its header route.
    assert_eq!(matched, config_upstreams(&config));
}

#[test]
fn slices_hold_every_member_endpoint_with_its_conditions_under_the_target_port() {
    let (_, generated) = generate("multi-port", "hz-a-dual-stack", "hz-b");
    let slices: Vec<Value> = generated
        .objects
        .iter()
        .filter(|o| o.kind() == "EndpointSlice")
        .map(as_json)
        .collect();
    let of = |name: &str| {
        slices
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap()
    };
    let v4 = of("shop-hz-a-ipv4");
    assert_eq!(
        v4["metadata"]["labels"]["kubernetes.io/service-name"],
        "shop-hz-a"
    );
    let ports: BTreeSet<(String, u64)> = v4["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    // Service port 80 -> 8080; 9090 (targetPort "metrics") -> 9102, as the member's slices say.
    assert_eq!(
        ports,
        [("http".into(), 8080), ("metrics".into(), 9102)].into()
    );
    let terminating = v4["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["conditions"]["terminating"] == true)
        .count();
    assert!(terminating >= 1, "terminating endpoints are kept: {v4}");
    assert!(slices.iter().any(|s| s["addressType"] == "IPv6"));
}

#[test]
fn objects_outside_the_allowed_namespaces_are_refused_alone() {
    let (derived, members) = render("multi-port", "hz-a", "hz-b");
    let opts = HigressOptions {
        namespaces: ["default", "fleetgate-system"].map(String::from).into(),
        ..HigressOptions::default()
    };
    let g = higress::generate(&derived, &members, &opts);
    assert!(g.objects.iter().all(|o| o.namespace() != "staging"));
    assert!(g.objects.iter().any(|o| o.name() == "shop-hz-a"));
    assert!(
        g.problems
            .iter()
            .any(|p| p.contains("staging") && p.contains("--higress-namespaces")),
        "{:?}",
        g.problems
    );
}

#[test]
fn templates_that_would_make_services_and_upstreams_disagree_are_rejected() {
    assert_eq!(higress::check_template(HIGRESS_UPSTREAM_TEMPLATE), Ok(()));
    let default = DeriveOptions::default().upstream_template;
    for bad in [
        default.as_str(),
        "outbound|{port}||{service}.{namespace}.svc.cluster.local",
        "outbound|{port}||{service}-{cluster}.fleet.svc.cluster.local",
        "{cluster}-{service}",
    ] {
        assert!(higress::check_template(bad).is_err(), "{bad}");
    }
}

/// The strict schema check (`scripts/check-manifests`) of YAML files: (passed, report).
fn schema_check(files: &[PathBuf]) -> (bool, String) {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    manifests::check_manifests(&paths, None)
}

#[test]
fn generated_objects_pass_the_strict_kubernetes_schema_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/higress");
    let files: Vec<PathBuf> = SCENARIOS
        .iter()
        .map(|(s, _, _)| dir.join(format!("{s}.yaml")))
        .collect();
    let (ok, report) = schema_check(&files);
    assert!(ok, "{report}");
}

#[test]
fn the_schema_check_fails_on_a_misspelt_field() {
    let (_, generated) = generate("active-active", "hz-a", "hz-b");
    let yaml = generated.to_yaml().unwrap();
    // An optional field, so the unknown name is the only error the check can report.
    assert!(yaml.contains("conditions:"));
    let path =
        std::env::temp_dir().join(format!("fleetgate-higress-bad-{}.yaml", std::process::id()));
    std::fs::write(&path, yaml.replacen("conditions:", "condition:", 1)).unwrap();
    let (ok, report) = schema_check(std::slice::from_ref(&path));
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "{report}");
    assert!(report.contains("'condition' was unexpected"), "{report}");
}

#[test]
fn a_member_never_synced_gets_its_service_but_no_endpoints() {
    let (derived, mut members) = render("active-active", "hz-a", "hz-b");
    for m in members.iter_mut().filter(|m| m.id == "hz-b") {
        m.contact = fleetgate_controller::derive::Contact::Never;
    }
    let g = higress::generate(&derived, &members, &options());
    let has = |kind: &str, name: &str| {
        g.objects
            .iter()
            .any(|o| o.kind() == kind && o.name() == name)
    };
    assert!(has("Service", "shop-hz-b") && has("Service", "shop-hz-a"));
    assert!(has("EndpointSlice", "shop-hz-a-ipv4"));
    assert!(!g
        .objects
        .iter()
        .any(|o| o.kind() == "EndpointSlice" && o.name().starts_with("shop-hz-b")));
}

#[test]
fn a_member_behind_its_own_gateway_gets_one_slice_at_the_gateway() {
    let slices_of = |hz_b_dump: &str| {
        let (derived, mut members) = render("active-active", "hz-a", hz_b_dump);
        for m in members.iter_mut().filter(|m| m.id == "hz-b") {
            m.gateway = Some("47.96.10.22:8443".parse().unwrap());
        }
        let g = higress::generate(&derived, &members, &options());
        g.objects
            .iter()
            .filter(|o| o.kind() == "EndpointSlice" && o.name().starts_with("shop-hz-b"))
            .map(as_json)
            .collect::<Vec<_>>()
    };
    let slices = slices_of("hz-b");
    assert_eq!(slices.len(), 1, "{slices:#?}");
    let s = &slices[0];
    assert_eq!(s["metadata"]["name"], "shop-hz-b-gateway");
    assert_eq!(s["endpoints"][0]["addresses"][0], "47.96.10.22");
    assert_eq!(s["endpoints"][0]["conditions"]["ready"], true);
    assert!(
        s["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["port"] == 8443),
        "{s}"
    );
    // No ready pod behind the gateway: the slice is empty, so Higress sends hz-b nothing.
    let slices = slices_of("hz-b-scaled-to-zero");
    assert_eq!(slices.len(), 1);
    assert!(
        slices[0]["endpoints"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{:#?}",
        slices[0]
    );
}
