//! The example gateway configs parse strictly and agree with the plugin config they embed.
//!
//! Envoy YAML: every `*.yaml` under `examples/envoy/`, plus any YAML file elsewhere in
//! `examples/` named `*.envoy.yaml` or with a top-level `static_resources` (see
//! `fleetgate_examples::envoy_yaml_files`), is decoded as `envoy.config.bootstrap.v3.Bootstrap`
//! with unknown fields rejected at every depth.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fleetgate_examples::{
    aggregate_members, check_bootstrap, check_bootstrap_yaml, cluster_names, clusters,
    envoy_yaml_files, header_routes, wasm_filters, yaml_to_json, CheckError,
};
use serde_json::{json, Value};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/checks has a parent")
        .to_path_buf()
}

fn envoy_files() -> Vec<PathBuf> {
    let files = envoy_yaml_files(&examples_dir()).expect("listing examples/");
    assert!(
        files.iter().any(|f| f.ends_with("envoy/envoy.yaml")),
        "examples/envoy/envoy.yaml not found among {files:?}"
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every checked Envoy file, validated and canonicalised.
fn bootstraps() -> Vec<(PathBuf, Value)> {
    envoy_files()
        .into_iter()
        .map(|p| {
            let v = check_bootstrap_yaml(&read(&p))
                .unwrap_or_else(|e| panic!("{} is not a valid Envoy bootstrap: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// The checked files that configure the gateway statically (not the xDS bootstrap, whose
/// listener, routes, plugin and clusters come from the controller).
fn static_bootstraps() -> Vec<(PathBuf, Value)> {
    let mut all = bootstraps();
    all.retain(|(_, v)| v["static_resources"]["listeners"].is_array());
    all
}

/// The main example, as raw (not canonicalised) JSON, for the negative tests to mutate.
fn example_raw() -> Value {
    let path = examples_dir().join("envoy/envoy.yaml");
    yaml_to_json(&read(&path)).expect("envoy.yaml is YAML")
}

// --- the descriptor set --------------------------------------------------------------------------

#[test]
fn descriptor_set_has_the_messages_the_examples_use() {
    let pool = fleetgate_examples::pool();
    for name in [
        "envoy.config.bootstrap.v3.Bootstrap",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "envoy.extensions.filters.http.wasm.v3.Wasm",
        "envoy.extensions.filters.http.router.v3.Router",
        "envoy.extensions.clusters.aggregate.v3.ClusterConfig",
        "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "google.protobuf.StringValue",
    ] {
        assert!(
            pool.get_message_by_name(name).is_some(),
            "{name} missing from {}",
            fleetgate_examples::DESCRIPTOR_SET_PATH
        );
    }
}

// --- every Envoy file is a valid bootstrap ---------------------------------------------------------

#[test]
fn every_envoy_yaml_is_a_strict_bootstrap() {
    let all = bootstraps();
    assert!(!all.is_empty());
    for (path, v) in &all {
        assert!(
            !clusters(v).is_empty(),
            "{}: no static clusters",
            path.display()
        );
    }
}

#[test]
fn envoy_yaml_discovery_includes_marked_files_elsewhere() {
    let dir = std::env::temp_dir().join(format!("fleetgate-examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("envoy/sub")).unwrap();
    std::fs::create_dir_all(dir.join("higress")).unwrap();
    std::fs::create_dir_all(dir.join("other")).unwrap();
    std::fs::write(dir.join("envoy/sub/a.yaml"), "admin: {}\n").unwrap();
    std::fs::write(dir.join("other/b.envoy.yaml"), "admin: {}\n").unwrap();
    std::fs::write(dir.join("other/c.yaml"), "static_resources: {}\n").unwrap();
    std::fs::write(dir.join("higress/d.yaml"), "kind: WasmPlugin\n").unwrap();
    std::fs::write(dir.join("other/broken.yaml"), "a: [unclosed\n").unwrap();
    std::fs::write(
        dir.join("other/multi.yaml"),
        "kind: A\n---\nstatic_resources: {}\n",
    )
    .unwrap();
    let found = envoy_yaml_files(&dir).unwrap();
    let names: Vec<_> = found
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        names,
        [
            "envoy/sub/a.yaml",
            "other/b.envoy.yaml",
            "other/c.yaml",
            "other/multi.yaml"
        ]
    );
}

// --- unknown fields are rejected at every depth, naming the field ---------------------------------

fn assert_rejected(doc: &Value, field: &str, path_part: &str) {
    let err: CheckError = check_bootstrap(doc).expect_err("an unknown field must be rejected");
    let text = err.to_string();
    assert!(
        text.contains(field),
        "error does not name the field {field:?}: {text}"
    );
    assert!(
        err.path.contains(path_part),
        "error path {:?} does not point into {path_part:?} ({text})",
        err.path
    );
}

fn hcm_mut(doc: &mut Value) -> &mut Value {
    &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

#[test]
fn rejects_unknown_field_at_top_level() {
    let mut doc = example_raw();
    doc["statics_resources"] = json!({});
    assert_rejected(&doc, "statics_resources", "");
}

#[test]
fn rejects_unknown_field_in_http_connection_manager_typed_config() {
    let mut doc = example_raw();
    hcm_mut(&mut doc)["stat_prefixx"] = json!("oops");
    assert_rejected(&doc, "stat_prefixx", "typed_config");
}

#[test]
fn rejects_unknown_field_in_wasm_vm_config() {
    let mut doc = example_raw();
    let filters = hcm_mut(&mut doc)["http_filters"]
        .as_array_mut()
        .expect("http_filters");
    let wasm = filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("the wasm filter");
    wasm["typed_config"]["config"]["vm_config"]["vm_idd"] = json!("fleetgate");
    assert_rejected(&doc, "vm_idd", "vm_config");
}

#[test]
fn rejects_unknown_field_in_a_cluster() {
    let mut doc = example_raw();
    doc["static_resources"]["clusters"][0]["conect_timeout"] = json!("1s");
    assert_rejected(&doc, "conect_timeout", "clusters");
}

#[test]
fn rejects_unknown_field_in_a_nested_cluster_extension() {
    // Inside the aggregate cluster's typed_config and inside outlier detection.
    let mut doc = example_raw();
    let cs = doc["static_resources"]["clusters"].as_array_mut().unwrap();
    let agg = cs
        .iter_mut()
        .find(|c| c.get("cluster_type").is_some())
        .expect("an aggregate cluster");
    agg["cluster_type"]["typed_config"]["clusterz"] = json!([]);
    assert_rejected(&doc, "clusterz", "cluster_type");

    let mut doc = example_raw();
    let cs = doc["static_resources"]["clusters"].as_array_mut().unwrap();
    let real = cs
        .iter_mut()
        .find(|c| c.get("outlier_detection").is_some())
        .expect("a cluster with outlier detection");
    real["outlier_detection"]["consecutive_500"] = json!(5);
    assert_rejected(&doc, "consecutive_500", "outlier_detection");
}

#[test]
fn rejects_unknown_type_url_and_bad_durations() {
    let mut doc = example_raw();
    hcm_mut(&mut doc)["@type"] = json!("type.googleapis.com/envoy.nope.v3.Nope");
    let err = check_bootstrap(&doc).expect_err("unknown @type");
    assert!(err.to_string().contains("envoy.nope.v3.Nope"), "{err}");

    let mut doc = example_raw();
    doc["static_resources"]["clusters"][0]["connect_timeout"] = json!("1 second");
    check_bootstrap(&doc).expect_err("a malformed duration");
}

// --- the plugin config inside Envoy agrees with Envoy -----------------------------------------------

#[test]
fn wasm_filter_loads_fleetgate_with_a_valid_plugin_config() {
    for (path, v) in static_bootstraps() {
        let filters = wasm_filters(&v);
        assert!(!filters.is_empty(), "{}: no wasm filter", path.display());
        for f in filters {
            assert_eq!(f.vm_id, "fleetgate", "{}", path.display());
            assert_eq!(f.runtime, "envoy.wasm.runtime.v8", "{}", path.display());
            assert_eq!(
                f.configuration_type,
                "type.googleapis.com/google.protobuf.StringValue",
                "{}",
                path.display()
            );
            fleetgate_plugin::config::parse(f.configuration.as_bytes()).unwrap_or_else(|e| {
                panic!("{}: plugin config {} rejected: {e}", path.display(), f.name)
            });
        }
    }
}

#[test]
fn routes_read_the_headers_the_plugin_sets() {
    for (path, v) in static_bootstraps() {
        let routes = header_routes(&v);
        assert!(
            !routes.is_empty(),
            "{}: no route uses cluster_header",
            path.display()
        );
        for f in wasm_filters(&v) {
            let cfg = fleetgate_plugin::config::parse(f.configuration.as_bytes()).unwrap();
            for r in &routes {
                assert_eq!(
                    r.cluster_header,
                    cfg.cluster_header,
                    "{}: vhost {}",
                    path.display(),
                    r.virtual_host
                );
                assert!(
                    !r.mirror_headers.is_empty(),
                    "{}: vhost {} has no header-driven mirror policy",
                    path.display(),
                    r.virtual_host
                );
                for m in &r.mirror_headers {
                    assert_eq!(*m, cfg.mirror_header, "{}", path.display());
                }
            }
        }
    }
}

#[test]
fn every_plugin_upstream_is_an_envoy_cluster() {
    for (path, v) in static_bootstraps() {
        let names: BTreeSet<String> = cluster_names(&v).into_iter().collect();
        for f in wasm_filters(&v) {
            let cfg = fleetgate_plugin::config::parse(f.configuration.as_bytes()).unwrap();
            assert!(!cfg.upstreams.is_empty());
            for u in cfg.upstreams.iter() {
                assert!(
                    names.contains(u),
                    "{}: upstream {u:?} is not an Envoy cluster",
                    path.display()
                );
            }
            let source = cfg
                .config_source
                .as_ref()
                .expect("the example pulls configs from the controller");
            assert!(
                names.contains(&source.upstream),
                "{}: config_source upstream {:?} is not an Envoy cluster",
                path.display(),
                source.upstream
            );
        }
    }
}

#[test]
fn aggregate_clusters_fail_over_to_existing_clusters() {
    for (path, v) in static_bootstraps() {
        let names: BTreeSet<String> = cluster_names(&v).into_iter().collect();
        let mut seen = 0;
        for c in clusters(&v) {
            let Some(members) = aggregate_members(c) else {
                continue;
            };
            seen += 1;
            assert!(
                members.len() >= 2,
                "{}: aggregate {} has no failover target",
                path.display(),
                c["name"]
            );
            for m in &members {
                assert!(
                    names.contains(m),
                    "{}: aggregate {} lists unknown cluster {m}",
                    path.display(),
                    c["name"]
                );
                let target = clusters(&v)
                    .into_iter()
                    .find(|t| t["name"] == m.as_str())
                    .unwrap();
                assert!(
                    aggregate_members(target).is_none(),
                    "{}: nested aggregate {m}",
                    path.display()
                );
            }
        }
        assert!(seen > 0, "{}: no aggregate cluster", path.display());
    }
}

#[test]
fn main_example_health_checks_outlier_detection_and_retries() {
    let path = examples_dir().join("envoy/envoy.yaml");
    let v = check_bootstrap_yaml(&read(&path)).unwrap();

    // Every real (non-aggregate) member cluster has the active and passive health settings.
    let mut real = 0;
    for c in clusters(&v) {
        let name = c["name"].as_str().unwrap();
        if aggregate_members(c).is_some() || !name.starts_with("direct|") || name.contains("shadow")
        {
            continue;
        }
        real += 1;
        let hc = &c["health_checks"][0];
        assert_eq!(hc["interval"], "1s", "{name}");
        assert_eq!(hc["unhealthy_threshold"], 2, "{name}");
        assert_eq!(hc["healthy_threshold"], 1, "{name}");
        assert!(hc.get("http_health_check").is_some(), "{name}");
        let od = &c["outlier_detection"];
        assert!(od.get("consecutive_5xx").is_some(), "{name}");
        assert!(od.get("consecutive_gateway_failure").is_some(), "{name}");
        assert_eq!(od["interval"], "1s", "{name}");
    }
    assert_eq!(real, 2);

    // The idempotent route retries everything that signals a dying cluster, on another priority.
    let routes = header_routes(&v);
    let retry = &routes[0].retry_policy;
    let on: BTreeSet<&str> = retry["retry_on"].as_str().unwrap().split(',').collect();
    for cond in [
        "connect-failure",
        "reset",
        "refused-stream",
        "retriable-status-codes",
        "gateway-error",
    ] {
        assert!(on.contains(cond), "retry_on lacks {cond}");
    }
    assert_eq!(
        retry["retry_priority"]["name"],
        "envoy.retry_priorities.previous_priorities"
    );
    assert_eq!(
        retry["retry_host_predicate"][0]["name"],
        "envoy.retry_host_predicates.previous_hosts"
    );
    // Non-idempotent methods retry only where the request cannot have been processed.
    let other = &routes.last().unwrap().retry_policy;
    assert_eq!(other["retry_on"], "connect-failure,refused-stream");

    // The controller cluster must not cut a 20 s long poll.
    let ctl = clusters(&v)
        .into_iter()
        .find(|c| c["name"] == "fleetgate-controller")
        .unwrap();
    let opts = &ctl["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["common_http_protocol_options"];
    for key in ["idle_timeout", "max_stream_duration"] {
        let secs = duration_secs(&opts[key]);
        assert!(
            secs > 20.0,
            "controller {key} {secs}s does not exceed the long poll"
        );
    }
}

fn duration_secs(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a duration: {v}"))
}

// --- Higress --------------------------------------------------------------------------------------

fn higress_plugin() -> Value {
    let path = examples_dir().join("higress/wasmplugin.yaml");
    yaml_to_json(&read(&path)).expect("wasmplugin.yaml is YAML")
}

/// The JSON Higress hands the plugin: `defaultConfig` (unless `defaultConfigDisable`), plus, when
/// `matchRules` are present, a `_rules_` list of each rule's `config` with its match key
/// (`ingress` -> `_match_route_`, `domain` -> `_match_domain_`, `service` -> `_match_service_`),
/// following Higress's `pkg/ingress/config/ingress_config.go` as described in the reference notes.
fn higress_plugin_json(spec: &Value) -> Value {
    let mut top = if spec["defaultConfigDisable"] == true {
        json!({})
    } else {
        spec["defaultConfig"].clone()
    };
    let rules = spec["matchRules"].as_array().cloned().unwrap_or_default();
    if !rules.is_empty() {
        let mut out = Vec::new();
        for rule in rules {
            let mut r = rule["config"].clone();
            if !r.is_object() {
                r = json!({});
            }
            for (key, match_key) in [
                ("ingress", "_match_route_"),
                ("domain", "_match_domain_"),
                ("service", "_match_service_"),
            ] {
                if let Some(v) = rule.get(key) {
                    r[match_key] = v.clone();
                }
            }
            out.push(r);
        }
        top["_rules_"] = Value::Array(out);
    }
    top
}

#[test]
fn higress_wasmplugin_config_is_a_valid_plugin_config() {
    let doc = higress_plugin();
    assert_eq!(doc["apiVersion"], "extensions.higress.io/v1alpha1");
    assert_eq!(doc["kind"], "WasmPlugin");
    let spec = &doc["spec"];
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert!(spec.get("phase").is_some() && spec.get("priority").is_some());
    let json = serde_json::to_vec(&higress_plugin_json(spec)).unwrap();
    let cfg = fleetgate_plugin::config::parse(&json)
        .unwrap_or_else(|e| panic!("the config Higress would pass the plugin is rejected: {e}"));
    assert!(!cfg.routes.is_empty());
    assert_eq!(cfg.cluster_header, "x-fleetgate-upstream");
    let source = cfg.config_source.expect("config_source");
    assert!(
        source.upstream.starts_with("outbound|"),
        "on Higress the controller is reached through its Istio-style cluster name"
    );
}

/// Documents a known gap: Higress merges `matchRules` into a `_rules_` key of the plugin
/// configuration, and schema v1 (`deny_unknown_fields`) rejects it. If this starts failing, the
/// plugin has learnt `_rules_`: enable the commented matchRules in
/// examples/higress/wasmplugin.yaml and turn this test around.
#[test]
fn higress_rules_key_is_not_understood_by_schema_v1() {
    let mut spec = higress_plugin()["spec"].clone();
    spec["matchRules"] =
        json!([{"ingress": ["default/shop"], "config": {"decision_header": "x-other"}}]);
    let cfg = higress_plugin_json(&spec);
    assert!(cfg["_rules_"][0]["_match_route_"] == json!(["default/shop"]));
    let err = fleetgate_plugin::config::parse(&serde_json::to_vec(&cfg).unwrap())
        .expect_err("schema v1 has no `_rules_`");
    assert!(err.to_string().contains("_rules_"), "{err}");
}
