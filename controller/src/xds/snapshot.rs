//! A snapshot as the ADS server sends it: per type, the resources encoded once (shared by
//! every stream) and a version that is a hash of their content, so a change that only moves
//! endpoints changes only the EDS version and only EDS is pushed.

use envoy_types::util::pack_any;
use prost::{Message, Name};
use sha2::{Digest, Sha256};

use super::pb::google::protobuf::Any;
use super::resources::Resources;
use super::{CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE};

/// The resources of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSnapshot {
    /// Hash of every resource's name and bytes (16 hex digits).
    pub version: String,
    /// `(name, resource)`, sorted by name.
    pub resources: Vec<(String, Any)>,
}

impl TypeSnapshot {
    fn new<M: Message + Name + Clone>(items: &[M], name: impl Fn(&M) -> &str) -> Self {
        let mut resources: Vec<(String, Any)> = items
            .iter()
            .map(|m| (name(m).to_string(), pack_any(m.clone())))
            .collect();
        resources.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = Sha256::new();
        for (n, any) in &resources {
            h.update((n.len() as u64).to_be_bytes());
            h.update(n.as_bytes());
            h.update((any.value.len() as u64).to_be_bytes());
            h.update(&any.value);
        }
        let digest = h.finalize();
        let head = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
        TypeSnapshot {
            version: format!("{head:016x}"),
            resources,
        }
    }

    /// The resources a request names; all of them for a wildcard request (no names, or `*`).
    /// Unknown names are left out (the client is told nothing about them, as SotW does).
    pub fn select(&self, names: &[String]) -> Vec<Any> {
        if names.is_empty() || names.iter().any(|n| n == "*") {
            return self.resources.iter().map(|(_, a)| a.clone()).collect();
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Ok(i) = self.resources.binary_search_by(|(k, _)| k.as_str().cmp(n)) {
                out.push(self.resources[i].1.clone());
            }
        }
        out
    }
}

/// Every type's resources, in push order (see [`super::TYPES`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    types: Vec<(&'static str, TypeSnapshot)>,
}

impl Snapshot {
    pub fn new(r: &Resources) -> Self {
        Snapshot {
            types: vec![
                (CLUSTER, TypeSnapshot::new(&r.clusters, |c| &c.name)),
                (
                    ENDPOINT,
                    TypeSnapshot::new(&r.endpoints, |e| &e.cluster_name),
                ),
                (LISTENER, TypeSnapshot::new(&r.listeners, |l| &l.name)),
                (ROUTE, TypeSnapshot::new(&r.routes, |x| &x.name)),
                (EXTENSION, TypeSnapshot::new(&r.extensions, |x| &x.name)),
            ],
        }
    }

    /// The resources of `type_url` (`None` for a type we do not serve).
    pub fn get(&self, type_url: &str) -> Option<&TypeSnapshot> {
        self.types
            .iter()
            .find(|(t, _)| *t == type_url)
            .map(|(_, s)| s)
    }

    /// Approximate heap size: names and encoded resources.
    pub fn encoded_bytes(&self) -> usize {
        let res = self.types.iter().flat_map(|(_, s)| &s.resources);
        res.map(|(n, a)| n.len() * 2 + a.value.len() + a.type_url.len())
            .sum()
    }
}

/// Publish `next` unless every type's version equals the current one's (streams are not woken
/// for nothing). Returns whether it was published.
pub fn publish(
    tx: &tokio::sync::watch::Sender<Option<std::sync::Arc<Snapshot>>>,
    next: Snapshot,
) -> bool {
    tx.send_if_modified(|current| {
        let same = current.as_ref().is_some_and(|c| {
            c.types.len() == next.types.len()
                && c.types
                    .iter()
                    .zip(&next.types)
                    .all(|(a, b)| a.0 == b.0 && a.1.version == b.1.version)
        });
        if !same {
            *current = Some(std::sync::Arc::new(next));
        }
        !same
    })
}
