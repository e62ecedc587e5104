//! A snapshot as the ADS server sends it: per type, the resources encoded once (shared by
//! every stream and by the next snapshot) and a version that is a hash of their content, so a
//! change that only moves endpoints changes only the EDS version and only EDS is pushed.
//!
//! A type's version is the wrapping sum of a 64-bit digest per resource (of its name and
//! bytes): replacing a few resources updates it without rehashing the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::{Message, Name};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::pb::google::protobuf::Any;
use super::resources::Resources;
use super::TYPES;

/// Suffix of the version of a type sent with its removed resources still in it.
pub const HELD: &str = "+held";

/// One encoded resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: Arc<str>,
    pub resource: Arc<Any>,
    digest: u64,
}

impl Entry {
    pub fn new<M: Message + Name>(name: &str, message: M) -> Entry {
        Entry::encode(name, &message)
    }

    /// Encode `message` (borrowed: a snapshot's resources are encoded without a copy).
    pub fn encode<M: Message + Name>(name: &str, message: &M) -> Entry {
        let resource = Any {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        };
        let mut h = Sha256::new();
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(&resource.value);
        let d = h.finalize();
        Entry {
            name: Arc::from(name),
            resource: Arc::new(resource),
            digest: u64::from_be_bytes(d[..8].try_into().unwrap_or_default()),
        }
    }
}

impl Entry {
    /// The resource's own version (delta xDS): its digest in hex.
    pub fn version(&self) -> String {
        format!("{:016x}", self.digest)
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }
}

/// The resources of one type.
#[derive(Debug, Clone, Default)]
pub struct TypeSnapshot {
    /// 16 hex digits.
    pub version: String,
    /// Sorted by name, names unique.
    pub entries: Vec<Entry>,
    /// Equal in two snapshots of a type when they have the same names at the same positions
    /// (one made from the other by replacing resources): lets a stream skip looking for
    /// removed names and reuse where its subscribed names are.
    names: NamesId,
}

/// See [`TypeSnapshot`]; 0 is "unknown".
type NamesId = u64;

fn new_names_id() -> NamesId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl PartialEq for TypeSnapshot {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.entries == other.entries
    }
}

impl TypeSnapshot {
    fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        TypeSnapshot {
            version: version(&entries),
            entries,
            names: new_names_id(),
        }
    }

    /// These resources with `changed` added or replaced by name.
    fn with(&self, changed: Vec<Entry>) -> Self {
        let mut entries = self.entries.clone();
        let mut added = Vec::new();
        for e in changed {
            match entries.binary_search_by(|x| x.name.cmp(&e.name)) {
                Ok(i) => entries[i] = e,
                Err(_) => added.push(e),
            }
        }
        if added.is_empty() {
            return TypeSnapshot {
                version: version(&entries),
                entries,
                names: self.names,
            };
        }
        entries.extend(added);
        TypeSnapshot::new(entries)
    }

    /// These resources plus those of `old` that are not among them, under a version of its
    /// own ([`HELD`] appended): what a stream is sent while the config that stops naming the
    /// removed ones is still on its way.
    pub fn keeping(&self, old: &TypeSnapshot) -> TypeSnapshot {
        let removed = old.entries.iter().filter(|e| {
            self.entries
                .binary_search_by(|x| x.name.cmp(&e.name))
                .is_err()
        });
        let mut all = self.entries.clone();
        all.extend(removed.cloned());
        let mut t = TypeSnapshot::new(all);
        t.version = format!("{}{HELD}", self.version);
        t
    }

    /// Whether some resource of `old` is not among these.
    pub fn removes_from(&self, old: &TypeSnapshot) -> bool {
        if self.same_names(old) {
            return false;
        }
        old.entries.iter().any(|e| {
            self.entries
                .binary_search_by(|x| x.name.cmp(&e.name))
                .is_err()
        })
    }

    /// Whether `other` has the same names at the same positions (known without comparing them).
    pub fn same_names(&self, other: &TypeSnapshot) -> bool {
        self.names != 0 && self.names == other.names
    }

    /// The resources a request names; all of them for a wildcard request (no names, or `*`).
    /// Unknown names are left out (the client is told nothing about them, as SotW does).
    pub fn select(&self, names: &[String]) -> Vec<Any> {
        self.select_cached(names, &mut Selection::default())
    }

    /// [`TypeSnapshot::select`], with where the names are kept in `cache` for the next
    /// snapshot of the same names (the caller resets it when its names change).
    pub fn select_cached(&self, names: &[String], cache: &mut Selection) -> Vec<Any> {
        if self.names == 0 || cache.of != self.names {
            *cache = Selection {
                of: self.names,
                at: self.positions(names),
            };
        }
        let any = |e: &Entry| (*e.resource).clone();
        match &cache.at {
            None => self.entries.iter().map(any).collect(),
            Some(at) => at.iter().map(|i| any(&self.entries[*i])).collect(),
        }
    }

    /// Positions of the named entries (`None`: all of them).
    fn positions(&self, names: &[String]) -> Option<Vec<usize>> {
        if names.is_empty() || names.iter().any(|n| n == "*") {
            return None;
        }
        let find = |n: &String| self.entries.binary_search_by(|e| (*e.name).cmp(n.as_str()));
        Some(names.iter().filter_map(|n| find(n).ok()).collect())
    }
}

/// Where a subscription's names are in a type snapshot, kept across snapshots that have the
/// same names at the same positions.
#[derive(Debug, Default)]
pub struct Selection {
    of: NamesId,
    at: Option<Vec<usize>>,
}

fn version(entries: &[Entry]) -> String {
    let sum = entries.iter().fold(0u64, |s, e| s.wrapping_add(e.digest));
    format!("{sum:016x}")
}

/// Every type's resources, in push order (see [`super::TYPES`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    types: Vec<(&'static str, Arc<TypeSnapshot>)>,
}

impl Snapshot {
    pub fn new(r: &Resources) -> Self {
        fn entries<M: Message + Name>(items: &[M], name: fn(&M) -> &str) -> Vec<Entry> {
            items.iter().map(|m| Entry::encode(name(m), m)).collect()
        }
        Snapshot::from_entries([
            entries(&r.clusters, |c| &c.name),
            entries(&r.endpoints, |e| &e.cluster_name),
            entries(&r.listeners, |l| &l.name),
            entries(&r.routes, |x| &x.name),
            entries(&r.extensions, |x| &x.name),
        ])
    }

    /// Encoded resources, per type in [`super::TYPES`] order.
    pub(crate) fn from_entries(types: [Vec<Entry>; 5]) -> Self {
        let all = TYPES.into_iter().zip(types);
        Snapshot {
            types: all
                .map(|(t, e)| (t, Arc::new(TypeSnapshot::new(e))))
                .collect(),
        }
    }

    /// This snapshot with the resources `changed` of `type_url` replaced (or added) by name;
    /// the other types are shared, not copied.
    pub fn with(&self, type_url: &str, changed: Vec<Entry>) -> Snapshot {
        let mut next = self.clone();
        if let Some((_, s)) = next.types.iter_mut().find(|(t, _)| *t == type_url) {
            *s = Arc::new(s.with(changed));
        }
        next
    }

    /// The resources of `type_url` (`None` for a type we do not serve).
    pub fn get(&self, type_url: &str) -> Option<&Arc<TypeSnapshot>> {
        let found = self.types.iter().find(|(t, _)| *t == type_url);
        found.map(|(_, s)| s)
    }

    /// Approximate heap size: names and encoded resources.
    pub fn encoded_bytes(&self) -> usize {
        let entries = self.types.iter().flat_map(|(_, s)| &s.entries);
        let each = |e: &Entry| e.name.len() + e.resource.value.len() + e.resource.type_url.len();
        entries.map(|e| each(e) + 64).sum()
    }

    /// Whether every type has the same version as in `other`.
    fn same_versions(&self, other: &Snapshot) -> bool {
        self.types.len() == other.types.len()
            && self
                .types
                .iter()
                .zip(&other.types)
                .all(|(a, b)| a.0 == b.0 && a.1.version == b.1.version)
    }
}

/// Publish `next` unless every type's version equals the current one's (streams are not woken
/// for nothing). Returns whether it was published.
pub fn publish(tx: &watch::Sender<Option<Arc<Snapshot>>>, next: Snapshot) -> bool {
    tx.send_if_modified(|current| {
        let same = current.as_ref().is_some_and(|c| c.same_versions(&next));
        if !same {
            *current = Some(Arc::new(next));
        }
        !same
    })
}
