//! Operations endpoints: `/healthz` (process alive), `/readyz` (once the fleet is listed and a
//! config is published; an unreachable member does not hold it back), `/metrics` (Prometheus
//! text format).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fleetgate_plugin::config::{ClusterState, ClusterV1};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::derive::{Derived, Problem, Severity};
use crate::xds::XdsMetrics;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Increments each time a new config revision is published.
    pub config_generation: Gauge,
    pub config_routes: Gauge,
    /// Members per state (`healthy`, `degraded`, `unknown`, `down`).
    pub members: Family<Labels, Gauge>,
    /// Ready endpoints per member, summed over the base Services of all routes.
    pub ready_endpoints: Family<Labels, Gauge>,
    /// Clients held in a config long-poll.
    pub handoff_waiting: Gauge,
    /// Ingresses with problems, by severity.
    pub ingress_problems: Family<Labels, Gauge>,
    /// Errors by kind (watch failures, derive, hand-off, leader election).
    pub errors: Family<Labels, Counter>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Derivations run, and how long each took (seconds).
    pub derive_seconds: Histogram,
    /// The ADS server's and the xDS snapshot builder's (`fleetgate_xds_*`).
    pub xds: XdsMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("fleetgate");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            config_generation: Gauge::default(),
            config_routes: Gauge::default(),
            members: Family::default(),
            ready_endpoints: Family::default(),
            handoff_waiting: Gauge::default(),
            ingress_problems: Family::default(),
            errors: Family::default(),
            leader: Gauge::default(),
            derive_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            xds: XdsMetrics::default(),
        };
        m.xds.register(&mut r);
        r.register(
            "derive_seconds",
            "Derivations run and their duration",
            m.derive_seconds.clone(),
        );
        r.register(
            "config_generation",
            "Config revisions published since start",
            m.config_generation.clone(),
        );
        r.register(
            "config_routes",
            "Routes in the current config",
            m.config_routes.clone(),
        );
        r.register("members", "Member clusters per state", m.members.clone());
        r.register(
            "ready_endpoints",
            "Ready endpoints per member cluster",
            m.ready_endpoints.clone(),
        );
        r.register(
            "handoff_waiting_clients",
            "Clients waiting in a config long-poll",
            m.handoff_waiting.clone(),
        );
        r.register(
            "ingress_problems",
            "Ingresses with problems, by severity",
            m.ingress_problems.clone(),
        );
        r.register("errors", "Errors by kind", m.errors.clone());
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

impl Metrics {
    /// Count an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&label("kind", kind)).inc();
    }

    pub fn observe_derive(&self, took: std::time::Duration) {
        self.derive_seconds.observe(took.as_secs_f64());
    }

    /// Ingresses with problems, by severity.
    pub fn observe_problems(&self, problems: &[Problem]) {
        for (sev, name) in [
            (Severity::Warning, "warning"),
            (Severity::Stale, "stale"),
            (Severity::Rejected, "rejected"),
        ] {
            let mut ingresses: Vec<_> = problems
                .iter()
                .filter(|p| p.severity == sev)
                .map(|p| &p.ingress)
                .collect();
            ingresses.dedup();
            self.ingress_problems
                .get_or_create(&label("severity", name))
                .set(ingresses.len() as i64);
        }
    }

    /// A derivation was published (`changed`: as a new revision): the gauges that describe it.
    pub fn observe_published(&self, d: &Derived, changed: bool) {
        self.observe_config(d.clusters(), d.route_count(), &d.ready_by_member());
        self.observe_problems(&d.problems);
        if changed {
            self.config_generation.inc();
        }
    }

    /// Update the gauges that describe a config.
    /// `ready` is per cluster (same order), summed over the distinct base upstreams.
    pub fn observe_config(&self, clusters: &[ClusterV1], routes: usize, ready: &[u64]) {
        self.config_routes.set(routes as i64);
        for (state, name) in [
            (ClusterState::Healthy, "healthy"),
            (ClusterState::Degraded, "degraded"),
            (ClusterState::Unknown, "unknown"),
            (ClusterState::Down, "down"),
        ] {
            let n = clusters.iter().filter(|m| m.state == state).count();
            self.members
                .get_or_create(&label("state", name))
                .set(n as i64);
        }
        for (m, ready) in clusters.iter().zip(ready) {
            self.ready_endpoints
                .get_or_create(&label("cluster", &m.id))
                .set(*ready as i64);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// State of the admin endpoints.
#[derive(Clone)]
pub struct Admin {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
}

pub fn router(a: Admin) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(a)
}

async fn readyz(State(a): State<Admin>) -> impl IntoResponse {
    if a.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n")
    }
}

async fn metrics(State(a): State<Admin>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        a.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled() {
        let m = Metrics::default();
        m.error("member_watch");
        m.handoff_waiting.inc();
        let text = m.render();
        assert!(
            text.contains("fleetgate_errors_total{kind=\"member_watch\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fleetgate_handoff_waiting_clients 1"),
            "{text}"
        );
    }

    #[test]
    fn xds_metrics_are_in_the_registry() {
        let m = Metrics::default();
        m.xds.pushed(crate::xds::ENDPOINT);
        m.xds.nacked(crate::xds::CLUSTER);
        m.xds.streams.inc();
        m.xds.build_seconds.observe(0.25);
        let text = m.render();
        for want in [
            "fleetgate_xds_pushes_total{type=\"ClusterLoadAssignment\"} 1",
            "fleetgate_xds_type_nacks_total{type=\"Cluster\"} 1",
            "fleetgate_xds_nacks_total 1",
            "fleetgate_xds_streams 1",
            "fleetgate_xds_snapshot_build_seconds_count 1",
            "fleetgate_xds_invalid_snapshots_total 0",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }
}
