//! The resources of one type, sorted by name, in shared chunks: a snapshot made from another
//! by replacing a few resources copies only their chunks and shares the rest. At 200,000
//! load assignments, copying the whole list for one pod replaced was the biggest part of an
//! endpoint update (an 8 MB allocation, faulted in afresh each time).

use std::sync::Arc;

use super::snapshot::Entry;

/// Entries per chunk: a replaced resource copies this many handles.
const CHUNK: usize = 1024;

/// Sorted by name, names unique.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    /// Every chunk holds [`CHUNK`] entries but the last, so position `i` is in chunk
    /// `i / CHUNK`.
    chunks: Vec<Arc<[Entry]>>,
    len: usize,
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Entries {
    /// `entries` must be sorted by name with unique names.
    pub fn from_sorted(entries: Vec<Entry>) -> Self {
        let len = entries.len();
        let mut moved = entries.into_iter();
        let chunks = (0..len.div_ceil(CHUNK)).map(|_| moved.by_ref().take(CHUNK).collect());
        Entries {
            len,
            chunks: chunks.collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> + Clone {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The entry at position `i`.
    pub fn get(&self, i: usize) -> &Entry {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The position of `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        let after = self.chunks.partition_point(|c| *c[0].name <= *name);
        let chunk = after.checked_sub(1)?;
        let at = self.chunks[chunk].binary_search_by(|e| (*e.name).cmp(name));
        at.ok().map(|i| chunk * CHUNK + i)
    }

    /// These entries with those at the given positions replaced (same names): the chunks
    /// they are in are copied, the others shared.
    pub fn replacing(&self, mut replaced: Vec<(usize, Entry)>) -> Self {
        replaced.sort_by_key(|(i, _)| *i);
        let mut chunks = self.chunks.clone();
        let mut replaced = replaced.into_iter().peekable();
        while let Some(&(i, _)) = replaced.peek() {
            let n = i / CHUNK;
            let mut copy = chunks[n].to_vec();
            while let Some((i, e)) = replaced.next_if(|(i, _)| i / CHUNK == n) {
                copy[i % CHUNK] = e;
            }
            chunks[n] = Arc::from(copy);
        }
        Entries {
            chunks,
            len: self.len,
        }
    }

    /// Pairs of chunks at the same positions that are not the same allocation (for `other`
    /// with the same names at the same positions: where they can differ).
    pub fn changed_chunks<'a, 'b>(
        &'a self,
        other: &'b Entries,
    ) -> impl Iterator<Item = (&'a [Entry], &'b [Entry])> + use<'a, 'b> {
        let pairs = self.chunks.iter().zip(&other.chunks);
        pairs
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .map(|(a, b)| (&a[..], &b[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::pb::google::protobuf::StringValue;

    fn entry(i: usize, value: &str) -> Entry {
        let v = StringValue {
            value: value.to_string(),
        };
        Entry::new(&format!("r{i:05}"), v)
    }

    fn list(n: usize) -> Entries {
        Entries::from_sorted((0..n).map(|i| entry(i, "a")).collect())
    }

    #[test]
    fn positions_and_names_across_chunks() {
        let e = list(CHUNK * 2 + 5);
        assert_eq!(e.len(), CHUNK * 2 + 5);
        for i in [0, CHUNK - 1, CHUNK, CHUNK * 2 + 4] {
            assert_eq!(e.find(&e.get(i).name), Some(i));
        }
        assert_eq!(e.find("r"), None, "before the first");
        assert_eq!(e.find("r00000x"), None, "between two");
        assert_eq!(e.find("s"), None, "after the last");
        assert!(Entries::default().find("r00000").is_none());
    }

    #[test]
    fn replacing_copies_only_the_chunks_it_touches() {
        let e = list(CHUNK * 3);
        let changed = vec![(CHUNK + 7, entry(CHUNK + 7, "b")), (3, entry(3, "b"))];
        let next = e.replacing(changed);
        assert_eq!(next.len(), e.len());
        assert_ne!(next.get(3), e.get(3));
        assert_ne!(next.get(CHUNK + 7), e.get(CHUNK + 7));
        let differing: usize = next.iter().zip(e.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 2);
        assert_eq!(next.changed_chunks(&e).count(), 2, "the third is shared");
    }
}
