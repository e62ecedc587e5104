//! The deploy manifests (`examples/deploy`, kustomize) as a user applies them: every
//! kustomization renders and passes the strict schema check (`scripts/check-manifests`), every
//! controller flag and variable they set exists in this binary, the Envoy overlay's bootstrap is
//! what `bootstrap` prints, and the Higress overlay's upstream naming is the one its WasmPlugin uses.

use std::path::PathBuf;
use std::process::Command;

use fleetgate_controller::cli;
use fleetgate_controller::derive::DeriveOptions;
use serde::Deserialize;
use serde_yaml::Value;

mod fleet_fixture;
mod manifests;
use manifests::{check_manifests, root};

/// A fresh directory of this test process.
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("fleetgate-deploy-{pid}-{n}-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn controller() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetgate-controller"))
}

/// Every kustomization rendered by `kubectl kustomize`, by directory (`base`, `overlays_envoy`...).
fn rendered() -> Vec<(String, Vec<Value>)> {
    let out = scratch("rendered");
    let (ok, report) = check_manifests(&[], Some(&out));
    assert!(ok, "{report}");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let name = path.file_stem().unwrap().to_string_lossy();
        all.push((name.trim_start_matches("examples_deploy_").to_owned(), docs));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn controller_container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "fleetgate-controller")["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn every_kustomization_renders_and_passes_the_strict_schema_check() {
    let names: Vec<String> = rendered().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "base",
            "demo",
            "member",
            "overlays_argocd",
            "overlays_envoy",
            "overlays_higress"
        ]
    );
}

#[test]
fn an_unknown_field_fails_the_check_and_names_the_field() {
    let dir = scratch("bad");
    std::fs::write(dir.join("kustomization.yaml"), "resources: [svc.yaml]\n").unwrap();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: shop}\n\
               spec: {ports: [{port: 80, targetPort: http, tragetPort: 8080}]}\n";
    std::fs::write(dir.join("svc.yaml"), svc).unwrap();
    let (ok, report) = check_manifests(&[&dir], None);
    assert!(!ok, "{report}");
    assert!(report.contains("'tragetPort' was unexpected"), "{report}");
}

#[test]
fn every_controller_flag_and_variable_the_manifests_set_exists() {
    for (name, docs) in rendered() {
        // No controller there (a member's RBAC; the quickstart's demo app).
        if name == "member" || name == "demo" {
            continue;
        }
        let container = controller_container(&docs);
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // Unknown flags, bad values and a flag given twice fail before `--help` is reached.
        let help = controller().args(&args).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        let errors = String::from_utf8_lossy(&help.stderr);
        assert!(help.status.success(), "{name}: {args:?}: {errors}");
        for env in container["env"].as_sequence().unwrap() {
            let var = env["name"].as_str().unwrap();
            if var.starts_with("FLEETGATE_") {
                assert!(
                    text.contains(&format!("[env: {var}")),
                    "{name}: {var} is no flag's variable"
                );
            }
        }
    }
}

#[test]
fn the_envoy_overlay_bootstrap_is_what_the_command_prints_with_the_xds_token() {
    let dir = root().join("examples/deploy/overlays/envoy");
    let token_doc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("xds-token.yaml")).unwrap())
            .unwrap();
    let token = token_doc["stringData"]["token"].as_str().unwrap();
    let printed = controller()
        .args([
            "bootstrap",
            "--node-id",
            "envoy-gateway",
            "--xds-token",
            token,
            "--xds",
        ])
        .arg("fleetgate-controller.fleetgate-system.svc.cluster.local:18000")
        .output()
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let file = std::fs::read_to_string(dir.join("bootstrap.yaml")).unwrap();
    let body: String = file
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(body, String::from_utf8_lossy(&printed.stdout));
}

#[test]
fn the_higress_overlay_derives_the_upstream_names_its_wasmplugin_routes_to() {
    let all = rendered();
    let docs = &all.iter().find(|(n, _)| n == "overlays_higress").unwrap().1;
    // The template set, or the one `--higress` implies.
    let container = controller_container(docs);
    let higress = container["args"]
        .as_sequence()
        .is_some_and(|a| a.iter().any(|a| a == "--higress"));
    let template = env_value(container, "FLEETGATE_UPSTREAM_TEMPLATE")
        .or(higress.then_some(fleetgate_controller::higress::HIGRESS_UPSTREAM_TEMPLATE))
        .expect("the Higress overlay sets the upstream template or --higress");
    let plugin = &find(docs, "WasmPlugin", "fleetgate")["spec"]["defaultConfig"];
    let upstreams = |routes: &Value| -> Vec<String> {
        let route = routes
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "default/shop");
        let backends = route.expect("route default/shop")["backends"]
            .as_sequence()
            .unwrap();
        let mut names: Vec<String> = backends
            .iter()
            .map(|b| b["upstream"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let options = DeriveOptions {
        upstream_template: template.to_owned(),
        ..DeriveOptions::default()
    };
    let args = fleet_fixture::two_members("active-active", options);
    let derived = cli::render(&args).unwrap();
    let config: Value = serde_json::from_slice(&derived.json).unwrap();
    assert_eq!(upstreams(&config["routes"]), upstreams(&plugin["routes"]));
}
