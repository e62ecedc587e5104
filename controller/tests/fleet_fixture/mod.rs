//! The fleet fixtures of `examples/fleet` as `render` reads them.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use fleetgate_controller::cli::{self, RenderArgs};
use fleetgate_controller::derive::{DeriveOptions, MemberSnapshot};
use fleetgate_controller::gateway_api::Objects;

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

/// The Gateway API objects of `examples/fleet/gateway-api`, its Namespaces' labels, and the two
/// members of `active-active`.
#[allow(dead_code)]
pub fn gateway_api() -> (
    Objects,
    BTreeMap<String, BTreeMap<String, String>>,
    Vec<MemberSnapshot>,
) {
    let dump = cli::load_dir(&fleet_dir().join("gateway-api")).unwrap();
    let labels = dump.namespace_labels();
    let args = two_members("active-active", DeriveOptions::default());
    let (_, members) = cli::render_with_members(&args).unwrap();
    (dump.gateway_api, labels, members)
}
