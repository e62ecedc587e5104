//! The gateway's clusters, as Envoy's cluster manager holds them: plain clusters with endpoints
//! (round robin across replicas), and aggregate clusters that list plain clusters in priority
//! order (Envoy `envoy.clusters.aggregate`). One table is shared by every worker and can change
//! at run time: it is the local stand-in for CDS/EDS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// One plain cluster: its endpoints and the round-robin cursor.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Cluster {
    /// The cluster's name (an Envoy cluster name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoints, in the order they were set.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The next endpoint in round-robin order, `None` when the cluster has no endpoints.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some(self.endpoints[index])
    }
}

/// What a cluster name routes to: its priorities (one plain cluster each), first = preferred.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Priority 0 first. A plain cluster resolves to itself alone.
    pub priorities: Vec<Arc<Cluster>>,
}

#[derive(Debug, Default)]
struct Table {
    clusters: BTreeMap<String, Arc<Cluster>>,
    aggregates: BTreeMap<String, Vec<String>>,
}

/// The cluster table (cheap to clone: one shared table).
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    table: Arc<RwLock<Table>>,
}

impl Upstreams {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces plain cluster `name` with `endpoints` (an EDS update).
    pub fn set_cluster(&self, name: &str, endpoints: Vec<SocketAddr>) {
        let cluster = Arc::new(Cluster {
            name: name.to_owned(),
            endpoints,
            next: AtomicUsize::new(0),
        });
        self.write().clusters.insert(name.to_owned(), cluster);
    }

    /// Creates or replaces aggregate cluster `name` over plain clusters `members`, in priority
    /// order. Members that do not exist (yet) are skipped when resolving.
    pub fn set_aggregate(&self, name: &str, members: &[&str]) {
        let members = members.iter().map(|m| (*m).to_owned()).collect();
        self.write().aggregates.insert(name.to_owned(), members);
    }

    /// Removes cluster or aggregate `name`.
    pub fn remove(&self, name: &str) {
        let mut table = self.write();
        table.clusters.remove(name);
        table.aggregates.remove(name);
    }

    /// The plain cluster `name`, if it exists.
    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.read().clusters.get(name).cloned()
    }

    /// What `name` routes to; `None` if no cluster or aggregate has that name (Envoy answers 404
    /// for a `cluster_header` naming an unknown cluster).
    pub fn resolve(&self, name: &str) -> Option<Resolved> {
        let table = self.read();
        if let Some(members) = table.aggregates.get(name) {
            let priorities = members
                .iter()
                .filter_map(|m| table.clusters.get(m).cloned())
                .collect();
            return Some(Resolved { priorities });
        }
        table.clusters.get(name).map(|c| Resolved {
            priorities: vec![Arc::clone(c)],
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin_cycles_through_every_endpoint() {
        let upstreams = Upstreams::new();
        upstreams.set_cluster("a", vec![addr(1), addr(2), addr(3)]);
        let cluster = upstreams.cluster("a").unwrap();
        let picked: Vec<u16> = (0..6).map(|_| cluster.pick().unwrap().port()).collect();
        assert_eq!(picked, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn aggregate_resolves_members_in_priority_order_and_skips_missing_ones() {
        let upstreams = Upstreams::new();
        upstreams.set_cluster("b", vec![addr(2)]);
        upstreams.set_cluster("a", vec![addr(1)]);
        upstreams.set_aggregate("agg", &["b", "gone", "a"]);
        let names: Vec<String> = upstreams
            .resolve("agg")
            .unwrap()
            .priorities
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn unknown_name_resolves_to_nothing_and_empty_cluster_picks_nothing() {
        let upstreams = Upstreams::new();
        upstreams.set_cluster("empty", Vec::new());
        assert!(upstreams.resolve("nope").is_none());
        assert!(upstreams.cluster("empty").unwrap().pick().is_none());
    }
}
