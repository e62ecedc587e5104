//! The xDS server's metrics (`fleetgate_xds_*`), registered beside the controller's in
//! `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A resource type, by its short name (`Cluster`, `ClusterLoadAssignment`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// The label of `type_url`: the message name after the last `.`.
fn type_label(type_url: &str) -> TypeLabel {
    TypeLabel {
        r#type: type_url.rsplit('.').next().unwrap_or(type_url).to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct XdsMetrics {
    /// Open ADS streams (both protocols).
    pub streams: Gauge,
    /// Discovery responses sent (all types).
    pub responses: Counter,
    pub acks: Counter,
    /// Rejections by a client (`error_detail` set), all types.
    pub nacks: Counter,
    /// Responses sent per type.
    pub pushes: Family<TypeLabel, Counter>,
    /// Rejections per type.
    pub nacks_by_type: Family<TypeLabel, Counter>,
    /// Full snapshot builds (build, validate, encode) and how long each took.
    pub build_seconds: Histogram,
    /// Endpoint-only updates (only the affected load assignments rebuilt) and their duration.
    pub update_seconds: Histogram,
    /// Snapshots not published because their resources were invalid (the last good one
    /// keeps serving).
    pub invalid: Counter,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        XdsMetrics {
            streams: Gauge::default(),
            responses: Counter::default(),
            acks: Counter::default(),
            nacks: Counter::default(),
            pushes: Family::default(),
            nacks_by_type: Family::default(),
            build_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            update_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            invalid: Counter::default(),
        }
    }
}

impl XdsMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("xds");
        r.register("streams", "Open ADS streams", self.streams.clone());
        r.register("responses", "xDS responses sent", self.responses.clone());
        r.register("acks", "xDS responses acknowledged", self.acks.clone());
        r.register("nacks", "xDS responses rejected", self.nacks.clone());
        r.register("pushes", "xDS responses sent per type", self.pushes.clone());
        r.register(
            "type_nacks",
            "xDS responses rejected per type",
            self.nacks_by_type.clone(),
        );
        r.register(
            "snapshot_build_seconds",
            "Full xDS snapshot builds (build, validate, encode) and their duration",
            self.build_seconds.clone(),
        );
        r.register(
            "endpoint_update_seconds",
            "Endpoint-only xDS updates and their duration",
            self.update_seconds.clone(),
        );
        r.register(
            "invalid_snapshots",
            "xDS snapshots not published because their resources were invalid",
            self.invalid.clone(),
        );
    }

    /// A response of `type_url` was sent.
    pub fn pushed(&self, type_url: &str) {
        self.responses.inc();
        self.pushes.get_or_create(&type_label(type_url)).inc();
    }

    /// A response of `type_url` was rejected.
    pub fn nacked(&self, type_url: &str) {
        self.nacks.inc();
        self.nacks_by_type
            .get_or_create(&type_label(type_url))
            .inc();
    }
}
