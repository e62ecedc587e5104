//! Counters via `proxy_define_metric`. Names carry their labels in dotted form
//! (`fleetgate_requests_total.cluster.hz-a.reason.weight`), which Envoy's tag extraction can
//! split; ids are defined lazily and cached.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

impl Metrics {
    pub fn inc(&mut self, name: &str) {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    self.ids.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
