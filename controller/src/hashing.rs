//! One in-process 64-bit hash for change detection (memos, change logs, dependency maps):
//! std's `DefaultHasher` with its fixed keys, so equal values hash alike within a process.
//! Nothing persists these values or sends them elsewhere.

use std::hash::{DefaultHasher, Hash, Hasher};

pub fn hash_of(v: &(impl Hash + ?Sized)) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}
