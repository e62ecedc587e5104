//! A snapshot as the ADS server sends it: per type, the resources encoded once (shared by
//! every stream and by the next snapshot) and a version that is a hash of their content, so a
//! change that only moves endpoints changes only the EDS version and only EDS is pushed.
//!
//! A type's version is the wrapping sum of a 64-bit digest per resource (of its name and
//! bytes): replacing a few resources updates it without rehashing the others.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message;
use tokio::sync::watch;
use xxhash_rust::xxh3::Xxh3;

use super::entries::Entries;
use super::pb::google::protobuf::Any;
use super::resources::Resources;
use super::TYPES;

/// Suffix of the version of a type sent with its removed resources still in it.
pub const HELD: &str = "+held";

/// One encoded resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: Arc<str>,
    /// The message's bytes (an `Any`'s value; the type is the snapshot's).
    value: Arc<[u8]>,
    digest: u64,
}

impl Entry {
    pub fn new<M: Message>(name: &str, message: M) -> Entry {
        Entry::encode(name, &message)
    }

    /// Encode `message` (borrowed: a snapshot's resources are encoded without a copy).
    pub fn encode<M: Message>(name: &str, message: &M) -> Entry {
        thread_local! {
            // Reused: each resource is one exact-size allocation, not a growing Vec's.
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            message.encode_raw(buf);
            Entry::from_value(name, Arc::from(buf.as_slice()))
        })
    }

    fn from_value(name: &str, value: Arc<[u8]>) -> Entry {
        // A stable, fast 64-bit digest (xxh3) of the name and bytes: equal across processes
        // and releases, since delta clients send it back as their resource versions.
        let mut h = Xxh3::new();
        h.update(&(name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(&value);
        Entry {
            name: Arc::from(name),
            value,
            digest: h.digest(),
        }
    }

    /// The encoded message.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The resource as an `Any` of `type_url` (a copy).
    pub fn any(&self, type_url: &str) -> Any {
        Any {
            type_url: type_url.to_string(),
            value: self.value.to_vec(),
        }
    }

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
    /// 16 hex digits: the wrapping sum of the digests.
    pub version: String,
    sum: u64,
    pub entries: Entries,
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
    pub(crate) fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        let sum = entries.iter().fold(0u64, |s, e| s.wrapping_add(e.digest));
        TypeSnapshot {
            version: format!("{sum:016x}"),
            sum,
            entries: Entries::from_sorted(entries),
            names: new_names_id(),
        }
    }

    /// These resources with `changed` added or replaced by name.
    fn with(&self, changed: Vec<Entry>) -> Self {
        let (mut replaced, mut added) = (Vec::new(), Vec::new());
        let mut sum = self.sum;
        for e in changed {
            match self.entries.find(&e.name) {
                Some(i) => {
                    let old = self.entries.get(i).digest;
                    sum = sum.wrapping_sub(old).wrapping_add(e.digest);
                    replaced.push((i, e));
                }
                None => added.push(e),
            }
        }
        if added.is_empty() {
            return TypeSnapshot {
                version: format!("{sum:016x}"),
                sum,
                entries: self.entries.replacing(replaced),
                names: self.names,
            };
        }
        let replaced = self.entries.replacing(replaced);
        let mut all: Vec<Entry> = replaced.iter().cloned().collect();
        all.extend(added);
        TypeSnapshot::new(all)
    }

    /// These resources plus those of `old` that are not among them, under a version of its
    /// own ([`HELD`] appended): what a stream is sent while the config that stops naming the
    /// removed ones is still on its way.
    pub fn keeping(&self, old: &TypeSnapshot) -> TypeSnapshot {
        let removed = old
            .entries
            .iter()
            .filter(|e| self.entries.find(&e.name).is_none());
        let mut all: Vec<Entry> = self.entries.iter().cloned().collect();
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
        old.entries
            .iter()
            .any(|e| self.entries.find(&e.name).is_none())
    }

    /// Whether `other` has the same names at the same positions (known without comparing them).
    pub fn same_names(&self, other: &TypeSnapshot) -> bool {
        self.names != 0 && self.names == other.names
    }

    /// Where the resources a request names are (`None`: all of them, for a wildcard request:
    /// no names, or `*`); unknown names are left out (the client is told nothing about them,
    /// as SotW does). Kept in `cache` for the next snapshot of the same names (the caller
    /// resets it when its names change).
    pub fn select_cached(&self, names: &[String], cache: &mut Selection) -> Option<Arc<[usize]>> {
        if self.names == 0 || cache.of != self.names {
            *cache = Selection {
                of: self.names,
                at: self.positions(names).map(Arc::from),
            };
        }
        cache.at.clone()
    }

    /// Positions of the named entries (`None`: all of them).
    fn positions(&self, names: &[String]) -> Option<Vec<usize>> {
        if names.is_empty() || names.iter().any(|n| n == "*") {
            return None;
        }
        Some(names.iter().filter_map(|n| self.entries.find(n)).collect())
    }
}

/// Where a subscription's names are in a type snapshot, kept across snapshots that have the
/// same names at the same positions.
#[derive(Debug, Default)]
pub struct Selection {
    of: NamesId,
    at: Option<Arc<[usize]>>,
}

/// Every type's resources, in push order (see [`super::TYPES`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    types: Vec<(&'static str, Arc<TypeSnapshot>)>,
}

impl Snapshot {
    pub fn new(r: &Resources) -> Self {
        fn entries<M: Message>(items: &[M], name: fn(&M) -> &str) -> Vec<Entry> {
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
        let entries = self.types.iter().flat_map(|(_, s)| s.entries.iter());
        let each = |e: &Entry| e.name.len() + e.value.len();
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
