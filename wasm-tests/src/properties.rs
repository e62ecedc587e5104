//! Properties as Envoy serializes them for `proxy_get_property`: a path of segments, values as raw
//! bytes (strings raw, int/uint as 8-byte little-endian, bool as one byte). An absent path answers
//! `NOT_FOUND`, which the Rust SDK reads as `None`.

use std::collections::HashMap;

/// Encodes an `int` property (e.g. `response.code`).
pub fn int(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// Encodes a `uint` property (e.g. the `response.flags` bitmask).
pub fn uint(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// Encodes a `string` property.
pub fn string(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// Encodes a `bool` property.
pub fn boolean(value: bool) -> Vec<u8> {
    vec![u8::from(value)]
}

/// Splits a dotted path (`"xds.cluster_name"`) into segments. Use the slice form of the setters
/// for segments that themselves contain dots.
pub fn dotted(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

/// A set of properties keyed by their `\0`-joined path, as the SDK serializes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Properties {
    values: HashMap<Vec<u8>, Vec<u8>>,
}

pub(crate) fn key<S: AsRef<[u8]>>(path: &[S]) -> Vec<u8> {
    let mut key = Vec::new();
    for (index, segment) in path.iter().enumerate() {
        if index > 0 {
            key.push(0);
        }
        key.extend_from_slice(segment.as_ref());
    }
    key
}

impl Properties {
    pub(crate) fn set<S: AsRef<[u8]>>(&mut self, path: &[S], value: Vec<u8>) {
        self.values.insert(key(path), value);
    }

    pub(crate) fn remove<S: AsRef<[u8]>>(&mut self, path: &[S]) {
        self.values.remove(&key(path));
    }

    pub(crate) fn get_key(&self, key: &[u8]) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
    }

    pub(crate) fn get<S: AsRef<[u8]>>(&self, path: &[S]) -> Option<&[u8]> {
        self.get_key(&key(path))
    }
}
