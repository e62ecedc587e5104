//! Builds the guest `.wasm` files the tests and benchmarks load, for both wasm targets.
//!
//! A nested `cargo build` runs with its own `--target-dir` (`<workspace>/target/wasm-build`) so it
//! never waits on the lock the outer build holds, and with the outer build's `CARGO_*`/`RUSTFLAGS`
//! environment removed so host flags and wrappers (clippy) do not leak into the wasm build.
//! The plugin is built separately from the noop filter and the probe guest: while it does not
//! compile, the host's own tests still run and only the plugin's accessors report the failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [(&str, &str); 2] = [
    ("wasm32-wasip1", "WASIP1"),
    ("wasm32-unknown-unknown", "UNKNOWN"),
];

/// (package, wasm file stem, env var prefix)
const HOST_GUESTS: [(&str, &str, &str); 3] = [
    (
        "fleetgate-noop-filter",
        "fleetgate_noop_filter",
        "FLEETGATE_NOOP",
    ),
    (
        "fleetgate-probe-guest",
        "fleetgate_probe_guest",
        "FLEETGATE_PROBE",
    ),
    (
        "fleetgate-router-guest",
        "fleetgate_router_guest",
        "FLEETGATE_ROUTER",
    ),
];
/// The workspace's wasm profile (panic = abort, then wasm-opt -Oz), as gateways get the plugin.
const PROFILE: &str = "wasm";
const PLUGIN: (&str, &str, &str) = ("fleetgate-plugin", "fleetgate_plugin", "FLEETGATE_PLUGIN");

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest_dir
        .parent()
        .expect("wasm-tests sits inside the workspace")
        .to_path_buf();
    let target_dir = workspace.join("target").join("wasm-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for path in [
        "scripts/wasm-opt",
        "plugin/src",
        "plugin/Cargo.toml",
        "wasm-tests/noop-filter",
        "wasm-tests/guests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    for (target, suffix) in TARGETS {
        let packages: Vec<&str> = HOST_GUESTS.iter().map(|(package, _, _)| *package).collect();
        if let Err(message) = build(&cargo, &workspace, &target_dir, target, &packages) {
            panic!("building the test guests for {target} failed: {message}");
        }
        for (_, stem, prefix) in HOST_GUESTS {
            export(prefix, suffix, &artifact(&target_dir, target, stem));
        }

        let (package, stem, prefix) = PLUGIN;
        let built = build(&cargo, &workspace, &target_dir, target, &[package]);
        match built.and_then(|()| shipped(&workspace, &artifact(&target_dir, target, stem), target))
        {
            Ok(wasm) => export(prefix, suffix, &wasm),
            Err(message) => {
                println!("cargo:warning=fleetgate-plugin does not build for {target}: {message}");
                // An empty path: `Module::plugin_*` reports the failure when a test asks for it.
                println!("cargo:rustc-env={prefix}_{suffix}=");
            }
        }
    }
}

fn artifact(target_dir: &Path, target: &str, stem: &str) -> PathBuf {
    target_dir
        .join(target)
        .join(PROFILE)
        .join(format!("{stem}.wasm"))
}

/// The plugin as gateways get it: for wasm32-wasip1, after the release step
/// (`scripts/wasm-opt`), so the tests run the very file that is shipped.
fn shipped(workspace: &Path, built: &Path, target: &str) -> Result<PathBuf, String> {
    if target != "wasm32-wasip1" {
        return Ok(built.to_path_buf());
    }
    let out = built.with_extension("opt.wasm");
    let status = Command::new("bash")
        .arg(workspace.join("scripts/wasm-opt"))
        .args([built, &out])
        .status()
        .map_err(|error| format!("cannot run scripts/wasm-opt: {error}"))?;
    match status.success() {
        true => Ok(out),
        false => Err(format!(
            "scripts/wasm-opt failed ({status}); run scripts/setup"
        )),
    }
}

fn export(prefix: &str, suffix: &str, path: &Path) {
    println!("cargo:rustc-env={prefix}_{suffix}={}", path.display());
}

fn build(
    cargo: &std::ffi::OsStr,
    workspace: &Path,
    target_dir: &Path,
    target: &str,
    packages: &[&str],
) -> Result<(), String> {
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            target,
            "--target-dir",
        ])
        .arg(target_dir);
    for package in packages {
        command.args(["-p", package]);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = key.starts_with("CARGO_") && key != "CARGO_HOME"
            || matches!(
                key.as_ref(),
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOC"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if leaks {
            command.env_remove(key.as_ref());
        }
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        Err(tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
    }
}
