//! Offline checks for the example gateway configs in `examples/`.
//!
//! Envoy YAML is validated strictly as `envoy.config.bootstrap.v3.Bootstrap` with `prost-reflect`
//! over the Envoy API descriptor set shipped by the `envoy-types` package (located by `build.rs`).
//! Unknown fields are rejected at every depth, including inside `typed_config` (an `Any` whose
//! `@type` is resolved through the descriptor pool). This catches misspelt or misplaced fields
//! without an Envoy binary; it does not catch what only Envoy's own validation (PGV rules,
//! cross-references, extension availability in a given build) would.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

/// Path of the Envoy descriptor set, fixed at build time by `build.rs`.
pub const DESCRIPTOR_SET_PATH: &str = env!("ENVOY_DESCRIPTOR_SET");

/// The fully-qualified name of Envoy's bootstrap message.
pub const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// The Envoy API descriptor pool (loaded once).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let bytes = std::fs::read(DESCRIPTOR_SET_PATH).unwrap_or_else(|e| {
            panic!("cannot read the Envoy descriptor set {DESCRIPTOR_SET_PATH}: {e}")
        });
        DescriptorPool::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("invalid Envoy descriptor set {DESCRIPTOR_SET_PATH}: {e}"))
    })
}

/// Why a config was rejected: where (a serde path such as
/// `static_resources.clusters[0].foo`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "at {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for CheckError {}

/// Parse YAML text into a JSON value (YAML syntax errors carry line and column).
pub fn yaml_to_json(text: &str) -> Result<Value, CheckError> {
    serde_yaml::from_str(text).map_err(|e| CheckError {
        path: String::new(),
        reason: format!("invalid YAML: {e}"),
    })
}

/// Strictly decode a JSON value as the protobuf message `message` (proto3 JSON mapping, unknown
/// fields rejected at every depth, `Any` resolved through the pool).
pub fn decode_strict(message: &str, value: &Value) -> Result<DynamicMessage, CheckError> {
    let desc = pool()
        .get_message_by_name(message)
        .ok_or_else(|| CheckError {
            path: String::new(),
            reason: format!("message {message} is not in the descriptor set"),
        })?;
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    // `DynamicMessage::deserialize` uses the default options, which deny unknown fields.
    DynamicMessage::deserialize(desc, de).map_err(|e| CheckError {
        path: track.path().to_string(),
        reason: e.to_string(),
    })
}

/// Strictly validate an Envoy bootstrap given as YAML and return it re-serialised in canonical
/// form (proto field names, `Any` expanded with `@type`), which the helpers below walk.
pub fn check_bootstrap_yaml(text: &str) -> Result<Value, CheckError> {
    let value = yaml_to_json(text)?;
    check_bootstrap(&value)
}

/// Like [`check_bootstrap_yaml`], for an already parsed document.
pub fn check_bootstrap(value: &Value) -> Result<Value, CheckError> {
    let msg = decode_strict(BOOTSTRAP, value)?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| CheckError {
            path: String::new(),
            reason: format!("re-serialising the bootstrap failed: {e}"),
        })
}

/// Every Envoy YAML file under `examples_dir`: all `*.yaml`/`*.yml` files below `envoy/`, plus
/// any YAML file elsewhere whose name ends in `.envoy.yaml` or whose top level has
/// `static_resources` (an Envoy bootstrap). Sorted; `target/` and hidden dirs are skipped, and
/// so are files outside `envoy/` that are not valid YAML (unless named `*.envoy.yaml`).
pub fn envoy_yaml_files(examples_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut all = Vec::new();
    collect_yaml(examples_dir, &mut all)?;
    let envoy_dir = examples_dir.join("envoy");
    let mut out = Vec::new();
    for path in all {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let chosen = path.starts_with(&envoy_dir)
            || name.ends_with(".envoy.yaml")
            || name.ends_with(".envoy.yml")
            || has_top_level_static_resources(&path)?;
        if chosen {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name.starts_with('.') || name == "target" {
                continue;
            }
            collect_yaml(&path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    Ok(())
}

fn has_top_level_static_resources(path: &Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        // Other examples (Kubernetes manifests, test fixtures) may be deliberately malformed;
        // a file that is not YAML is not recognised as Envoy config by content.
        let Ok(v) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
            return Ok(false);
        };
        if v.get("static_resources").is_some() || v.get("staticResources").is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A wasm HTTP filter found in a listener's HTTP connection manager.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// `config.name`.
    pub name: String,
    /// `config.vm_config.vm_id`.
    pub vm_id: String,
    /// `config.vm_config.runtime`.
    pub runtime: String,
    /// `config.configuration`'s `@type`.
    pub configuration_type: String,
    /// The plugin configuration string (`StringValue.value`).
    pub configuration: String,
}

/// A route whose action picks the cluster from a request header.
#[derive(Debug, Clone)]
pub struct HeaderRoute {
    pub virtual_host: String,
    /// `route.cluster_header`.
    pub cluster_header: String,
    /// `route.request_mirror_policies[].cluster_header` (the ones that use a header).
    pub mirror_headers: Vec<String>,
    /// `route.retry_policy`, canonical JSON (or null).
    pub retry_policy: Value,
}

/// All HTTP connection managers of all static listeners (canonical JSON).
pub fn http_connection_managers(bootstrap: &Value) -> Vec<&Value> {
    const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let mut out = Vec::new();
    for listener in array(&bootstrap["static_resources"]["listeners"]) {
        for chain in array(&listener["filter_chains"]) {
            for filter in array(&chain["filters"]) {
                let tc = &filter["typed_config"];
                if tc["@type"] == HCM {
                    out.push(tc);
                }
            }
        }
    }
    out
}

/// The wasm HTTP filters of every HTTP connection manager.
pub fn wasm_filters(bootstrap: &Value) -> Vec<WasmFilter> {
    const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
    let mut out = Vec::new();
    for hcm in http_connection_managers(bootstrap) {
        for f in array(&hcm["http_filters"]) {
            let tc = &f["typed_config"];
            if tc["@type"] != WASM {
                continue;
            }
            let c = &tc["config"];
            out.push(WasmFilter {
                name: string(&c["name"]),
                vm_id: string(&c["vm_config"]["vm_id"]),
                runtime: string(&c["vm_config"]["runtime"]),
                configuration_type: string(&c["configuration"]["@type"]),
                configuration: string(&c["configuration"]["value"]),
            });
        }
    }
    out
}

/// Every route (in inline `route_config`s) that routes by `cluster_header`.
pub fn header_routes(bootstrap: &Value) -> Vec<HeaderRoute> {
    let mut out = Vec::new();
    for hcm in http_connection_managers(bootstrap) {
        for vh in array(&hcm["route_config"]["virtual_hosts"]) {
            for route in array(&vh["routes"]) {
                let action = &route["route"];
                let Some(header) = action["cluster_header"].as_str() else {
                    continue;
                };
                out.push(HeaderRoute {
                    virtual_host: string(&vh["name"]),
                    cluster_header: header.to_string(),
                    mirror_headers: array(&action["request_mirror_policies"])
                        .iter()
                        .filter_map(|m| m["cluster_header"].as_str().map(str::to_string))
                        .collect(),
                    retry_policy: action["retry_policy"].clone(),
                });
            }
        }
    }
    out
}

/// Every statically defined cluster, by name.
pub fn clusters(bootstrap: &Value) -> Vec<&Value> {
    array(&bootstrap["static_resources"]["clusters"])
        .iter()
        .collect()
}

/// Names of all static clusters.
pub fn cluster_names(bootstrap: &Value) -> Vec<String> {
    clusters(bootstrap)
        .iter()
        .map(|c| string(&c["name"]))
        .collect()
}

/// The `clusters` list of an `envoy.clusters.aggregate` cluster, or `None` for other clusters.
pub fn aggregate_members(cluster: &Value) -> Option<Vec<String>> {
    const AGG: &str = "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig";
    let tc = &cluster["cluster_type"]["typed_config"];
    if tc["@type"] != AGG {
        return None;
    }
    Some(array(&tc["clusters"]).iter().map(string).collect())
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn string(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}
