//! Counters via `proxy_define_metric`. Names carry their labels in dotted form
//! (`fleetgate_requests_total.cluster.hz-a.reason.weight`), which Envoy's tag extraction can
//! split; ids are defined lazily and cached.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::decide::Reason;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// Request counters by `cluster * REASONS + reason` of the config in service, so the hot
    /// path neither formats a name nor hashes one.
    requests: Vec<Option<u32>>,
}

const REASONS: usize = Reason::ALL.len();

impl Metrics {
    /// Forget per-config ids (cluster indexes changed).
    pub fn reset(&mut self, clusters: usize) {
        self.requests = vec![None; clusters * REASONS];
    }

    /// `fleetgate_requests_total.cluster.<id>.reason.<reason>`.
    pub fn inc_request(&mut self, cluster: usize, cluster_id: &str, reason: Reason) {
        let r = Reason::ALL.iter().position(|&x| x == reason).unwrap_or(0);
        let slot = cluster * REASONS + r;
        let id = match self.requests.get(slot).copied().flatten() {
            Some(id) => id,
            None => {
                let name = format!(
                    "fleetgate_requests_total.cluster.{cluster_id}.reason.{}",
                    reason.as_str()
                );
                let Some(id) = self.define(&name) else { return };
                if let Some(s) = self.requests.get_mut(slot) {
                    *s = Some(id);
                }
                id
            }
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    pub fn inc(&mut self, name: &str) {
        if let Some(id) = self.define(name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// The id of counter `name`, defined on first use.
    fn define(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        self.ids.insert(name.to_string(), id);
        Some(id)
    }
}
