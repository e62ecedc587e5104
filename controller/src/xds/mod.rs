//! fleetgate as an xDS control plane: the Envoy resources that carry the members' endpoints,
//! the aggregate clusters the plugin names, the listener, its routes and the plugin itself
//! (by ECDS), built from the same snapshot as the plugin config, and an ADS server that streams
//! them to Envoy.
//!
//! - [`resources`]: the pure `(Derived, members, options) -> Resources` builder;
//! - [`clusters`], [`listener`]: the Envoy messages themselves;
//! - [`validate`]: cross-reference checks run before anything is sent;
//! - [`encode`]: build, check and encode in one pass (what the server publishes);
//! - [`snapshot`]: resources encoded once per type, with a content version per type, kept in
//!   shared chunks ([`entries`]);
//! - [`feed`]: the snapshot kept up to date off the derive loop (endpoint-only updates);
//! - [`server`]: the ADS server (tonic), state of the world, and [`delta`] (incremental);
//! - [`grpc`]: the gRPC service routing both, [`wire`]: SotW responses written from the
//!   pre-encoded resources;
//! - [`metrics`]: the server's Prometheus metrics;
//! - [`bootstrap`]: the minimal Envoy bootstrap that points at the server.

pub mod bootstrap;
pub mod clusters;
pub mod delta;
pub mod encode;
pub mod entries;
pub mod feed;
pub mod grpc;
pub mod listener;
pub mod metrics;
pub mod resources;
pub mod server;
pub mod snapshot;
pub mod validate;
pub mod wire;

pub use encode::{build_snapshot, Encoded};
pub use envoy_types::pb;
pub use resources::{build, endpoint_entries, DirectTarget, Resources, WasmCode, XdsOptions};
pub use server::{serve, AdsServer, Auth, Snapshots, Tls, XdsMetrics};
pub use snapshot::{publish, Snapshot};

/// Type URLs of the resource types we serve, in make-before-break push order: clusters and
/// their endpoints before the listener, routes and plugin that use them.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const EXTENSION: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// All served types, in push order.
pub const TYPES: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTENSION];

/// Why no resources could be built.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    /// Cross-reference checks failed; nothing of this snapshot is sent.
    #[error("invalid xDS resources: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("wasm uri {uri:?}: {reason}")]
    WasmUri { uri: String, reason: String },
    #[error(
        "xDS on {addr} is open to the network: set a token, client certificates \
         (--xds-client-ca) or --insecure-xds"
    )]
    Insecure { addr: std::net::SocketAddr },
    #[error("xDS server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("xDS listener: {0}")]
    Io(#[from] std::io::Error),
}

/// "From the ADS stream" (v3), the config source of every dynamic resource.
pub(crate) fn ads() -> pb::envoy::config::core::v3::ConfigSource {
    use pb::envoy::config::core::v3::{config_source, AggregatedConfigSource, ApiVersion};
    pb::envoy::config::core::v3::ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub(crate) fn duration(seconds: i64) -> pb::google::protobuf::Duration {
    pb::google::protobuf::Duration { seconds, nanos: 0 }
}
