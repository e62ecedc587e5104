//! Locates the Envoy API descriptor set for the config checks.
//!
//! The `envoy-types` crate ships a `FileDescriptorSet` of all of Envoy's API protos (including
//! the wasm filter, aggregate cluster and retry extensions) as the package file
//! `src/generated/types.bin`. We only want that file, not the crate's Rust code (tonic + prost +
//! hyper: a heavy compile), so Cargo.toml lists `envoy-types` under a never-true
//! `cfg(any())` target: it is resolved and pinned in Cargo.lock but never built. This script asks
//! `cargo metadata` (which downloads every locked package, whatever its platform) where the package
//! lives, and hands the file's path to the crate as `ENVOY_DESCRIPTOR_SET`.
//!
//! Set `FLEETGATE_ENVOY_DESCRIPTOR_SET=/path/to/descriptor.bin` to use another descriptor set
//! (e.g. one built with `protoc --include_imports -o` from a newer Envoy API) and skip the lookup.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const OVERRIDE: &str = "FLEETGATE_ENVOY_DESCRIPTOR_SET";
const PACKAGE: &str = "envoy-types";
const FILE: &str = "src/generated/types.bin";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={OVERRIDE}");

    let path = match env::var_os(OVERRIDE) {
        Some(p) => PathBuf::from(p),
        None => locate_in_envoy_types(),
    };
    if !path.is_file() {
        panic!("Envoy descriptor set not found at {}", path.display());
    }
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-env=ENVOY_DESCRIPTOR_SET={}", path.display());
}

fn locate_in_envoy_types() -> PathBuf {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The lock file decides which envoy-types version is used; re-run when it changes.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../../Cargo.lock").display()
    );
    let out = Command::new(cargo)
        .arg("metadata")
        .args(["--format-version", "1"])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .output()
        .expect("failed to run `cargo metadata`");
    if !out.status.success() {
        panic!(
            "`cargo metadata` failed (set {OVERRIDE} to a descriptor set to skip it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("`cargo metadata` printed invalid JSON");
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PACKAGE)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("package {PACKAGE} is not in `cargo metadata`'s output"));
    PathBuf::from(manifest)
        .parent()
        .expect("manifest path has a parent")
        .join(FILE)
}
