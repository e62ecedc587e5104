//! Counters via `proxy_define_metric`. Names carry their labels in dotted form
//! (`fleetgate_requests_total.cluster.hz-a.reason.weight`), which Envoy's tag extraction can
//! split; ids are defined lazily and cached.

use std::collections::HashMap;

use crate::decide::Reason;

use super::host;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// `fleetgate_host_errors_total`, once defined.
    host_errors: Option<u32>,
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
        host::increment(id);
    }

    pub fn inc(&mut self, name: &str) {
        if let Some(id) = self.define(name) {
            host::increment(id);
        }
    }

    /// Add the host errors seen since the last flush to `fleetgate_host_errors_total`. If the
    /// host cannot even count those, they are dropped: nothing else can be done with them.
    pub fn flush_host_errors(&mut self) {
        let n = host::take_host_errors();
        if n == 0 {
            return;
        }
        if self.host_errors.is_none() {
            self.host_errors = host::define_counter_quietly("fleetgate_host_errors_total");
        }
        if let Some(id) = self.host_errors {
            host::increment_quietly(id, n);
        }
    }

    /// The id of counter `name`, defined on first use.
    fn define(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = host::define_counter(name)?;
        self.ids.insert(name.to_string(), id);
        Some(id)
    }
}
