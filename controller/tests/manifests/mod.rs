//! The strict Kubernetes schema check (`scripts/check-manifests`), shared by the tests of the
//! deploy manifests and of the generated Higress objects.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the check on `paths` (kustomization directories or YAML files; every kustomization of
/// `examples/deploy` when empty), writing what was rendered to `out`: (success, report).
pub fn check_manifests(paths: &[&Path], out: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(root().join("scripts/check-manifests"));
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    let done = cmd
        .args(paths)
        .output()
        .expect("run scripts/check-manifests");
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&done.stderr);
    (done.status.success(), format!("{stdout}{stderr}"))
}
