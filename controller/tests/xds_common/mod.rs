//! Shared by the xDS tests: fixtures rendered from `examples/fleet/`, and the strict check of a
//! typed Envoy message against Envoy's own descriptors.
#![allow(dead_code)]

pub mod client;
pub mod delta_client;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetgate_controller::cli::{self, RenderArgs};
use fleetgate_controller::derive::{DeriveOptions, Derived, MemberSnapshot};
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use fleetgate_controller::xds::{
    self, AdsServer, Auth, Resources, Snapshot, WasmCode, XdsMetrics, XdsOptions,
};
use fleetgate_examples::{decode_strict, pool};
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};

/// Where a test publishes snapshots to its ADS server.
pub type Publisher = tokio::sync::watch::Sender<Option<Arc<Snapshot>>>;

/// An ADS server on a free loopback port, serving `initial` (`None`: nothing built yet);
/// answers its `http://` address.
pub async fn start_ads(
    initial: Option<Arc<Snapshot>>,
    auth: Auth,
) -> (String, Publisher, XdsMetrics) {
    let (publisher, rx) = tokio::sync::watch::channel(initial);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let metrics = XdsMetrics::default();
    tokio::spawn(AdsServer::new(rx, auth, metrics.clone()).serve(listener));
    (addr, publisher, metrics)
}

/// Envoy's default HTTP/2 stream and connection windows (`Http2ProtocolOptions`, 256 MiB):
/// a large SotW response flows without waiting for window updates, as it does to Envoy.
const ENVOY_WINDOW: u32 = 256 << 20;

/// A tonic ADS client of `addr` that takes responses of any size, with Envoy's windows.
pub async fn ads_client(addr: &str) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .initial_stream_window_size(ENVOY_WINDOW)
        .initial_connection_window_size(ENVOY_WINDOW)
        .connect()
        .await
        .unwrap();
    AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX)
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The render args of a fixture scenario, `hz-b` read from `hz_b_dir` (a path).
pub fn render_args(scenario: &str, hz_a: &Path, hz_b: &Path) -> RenderArgs {
    let fleet = root().join("examples/fleet");
    RenderArgs {
        fleet: vec![fleet.join("clusters"), fleet.join(scenario)],
        members: vec![
            ("hz-a".to_string(), hz_a.to_path_buf()),
            ("hz-b".to_string(), hz_b.to_path_buf()),
        ],
        zones: Vec::new(),
        options: DeriveOptions::default(),
    }
}

pub fn member_dir(name: &str) -> PathBuf {
    root().join("examples/fleet/members").join(name)
}

/// Derived config and members of a fixture scenario.
pub fn fixture(scenario: &str, hz_a: &str, hz_b: &str) -> (Derived, Vec<MemberSnapshot>) {
    let args = render_args(scenario, &member_dir(hz_a), &member_dir(hz_b));
    cli::render_with_members(&args).unwrap_or_else(|e| panic!("{scenario}: {e}"))
}

/// Replace hz-b's first pod in place (a new address, the same ready count): only that
/// member's `shop` endpoints differ. Returns hz-b.
pub fn replace_hz_b_pod(members: &mut [MemberSnapshot]) -> &MemberSnapshot {
    let dump = cli::load_dir(&member_dir("hz-b")).unwrap();
    let mut slice = dump.endpoint_slices[0].clone();
    slice.endpoints[0].addresses = vec!["10.2.9.99".into()];
    let hz_b = members.iter_mut().find(|m| m.id == "hz-b").unwrap();
    let mut index = (*hz_b.index).clone();
    index.apply_slice(&slice);
    hz_b.index = std::sync::Arc::new(index);
    hz_b
}

/// The `active-active` snapshot after [`replace_hz_b_pod`].
pub fn pod_replaced() -> std::sync::Arc<xds::Snapshot> {
    let (d, mut members) = fixture("active-active", "hz-a", "hz-b");
    replace_hz_b_pod(&mut members);
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    std::sync::Arc::new(xds::Snapshot::new(&r))
}

pub fn options(wasm: WasmCode) -> XdsOptions {
    XdsOptions::new(
        &DeriveOptions::default(),
        "0.0.0.0:8080".parse().unwrap(),
        wasm,
    )
}

pub fn file_wasm() -> WasmCode {
    WasmCode::File("/etc/envoy/fleetgate_plugin.wasm".into())
}

pub fn resources(scenario: &str) -> (Derived, Resources) {
    let (d, members) = fixture(scenario, "hz-a", "hz-b");
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    (d, r)
}

/// Strictly check a typed message against Envoy's descriptors: decoded by the descriptor with
/// no unknown field at any depth (inside `Any` too), and its proto3 JSON (every `Any` resolved
/// through the pool) decoded back with unknown fields denied. Returns that JSON.
pub fn check_strict<M: prost::Message + prost::Name>(m: &M) -> Result<serde_json::Value, String> {
    check_bytes(&M::full_name(), &m.encode_to_vec())
}

pub fn check_bytes(full_name: &str, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let desc = descriptor(full_name)?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| format!("{full_name}: {e}"))?;
    no_unknown_fields(&msg, full_name)?;
    let json = serde_json::to_value(&msg).map_err(|e| format!("{full_name} to JSON: {e}"))?;
    decode_strict(full_name, &json).map_err(|e| format!("{full_name}: {e}"))?;
    Ok(json)
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor, String> {
    pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("{full_name} is not in Envoy's descriptor set"))
}

fn no_unknown_fields(msg: &DynamicMessage, path: &str) -> Result<(), String> {
    if msg.unknown_fields().next().is_some() {
        return Err(format!("{path}: unknown fields"));
    }
    if msg.descriptor().full_name() == "google.protobuf.Any" {
        let url = msg.get_field_by_name("type_url").unwrap();
        let value = msg.get_field_by_name("value").unwrap();
        let (Value::String(url), Value::Bytes(value)) = (url.as_ref(), value.as_ref()) else {
            return Err(format!("{path}: malformed Any"));
        };
        let name = url.rsplit('/').next().unwrap_or_default();
        let inner = DynamicMessage::decode(descriptor(name)?, value.as_ref())
            .map_err(|e| format!("{path}: Any {name}: {e}"))?;
        return no_unknown_fields(&inner, &format!("{path}<{name}>"));
    }
    for (field, value) in msg.fields() {
        let here = format!("{path}.{}", field.name());
        match value {
            Value::Message(m) => no_unknown_fields(m, &here)?,
            Value::List(items) => {
                for item in items {
                    if let Value::Message(m) = item {
                        no_unknown_fields(m, &here)?;
                    }
                }
            }
            Value::Map(map) => {
                for v in map.values() {
                    if let Value::Message(m) = v {
                        no_unknown_fields(m, &here)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
