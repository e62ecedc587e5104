//! The fleet fixtures of `examples/fleet` as `render` reads them.

use std::path::{Path, PathBuf};

use fleetgate_controller::cli::RenderArgs;
use fleetgate_controller::derive::DeriveOptions;

pub fn fleet_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

/// The members' Argo CD Secrets and the Ingresses of `scenario`, with `hz-a` and `hz-b` read
/// from their dumps.
pub fn two_members(scenario: &str, options: DeriveOptions) -> RenderArgs {
    let fleet = fleet_dir();
    RenderArgs {
        fleet: vec![fleet.join("clusters"), fleet.join(scenario)],
        members: ["hz-a", "hz-b"]
            .map(|m| (m.to_string(), fleet.join("members").join(m)))
            .to_vec(),
        zones: vec![],
        options,
    }
}
