//! Envoy-like header maps: keys are lower-cased on the way in (Envoy stores `LowerCaseString`),
//! pairs keep their order, pseudo-headers are ordinary pairs, a lookup answers the first value.

use std::borrow::Cow;
use std::ops::ControlFlow;

use proxy_wasm_host::{HeaderMap, NotAllowed, PairVisitor};

/// An ordered multimap of lower-cased header names to values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn lower(key: &[u8]) -> Cow<'_, [u8]> {
    if key.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

impl Headers {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair (the name is lower-cased).
    pub fn push(&mut self, key: &str, value: &str) {
        self.pairs.push((
            lower(key.as_bytes()).into_owned(),
            value.as_bytes().to_vec(),
        ));
    }

    /// Appends a pair whose value is raw bytes (hostile tests: non-UTF-8 values).
    pub fn push_bytes(&mut self, key: &str, value: &[u8]) {
        self.pairs
            .push((lower(key.as_bytes()).into_owned(), value.to_vec()));
    }

    /// The first value of `key` as text, if present.
    pub fn get_str(&self, key: &str) -> Option<String> {
        HeaderMap::get(self, key.as_bytes())
            .map(|value| String::from_utf8_lossy(&value).into_owned())
    }

    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<String> {
        let key = lower(key.as_bytes());
        self.pairs
            .iter()
            .filter(|(k, _)| *k == *key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// All pairs as text, in order.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// Number of pairs.
    pub fn count(&self) -> usize {
        self.pairs.len()
    }
}

impl HeaderMap for Headers {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key = lower(key);
        self.pairs
            .iter()
            .find(|(k, _)| *k == *key)
            .map(|(_, v)| Cow::Borrowed(v.as_slice()))
    }

    fn for_each_pair(&self, f: &mut PairVisitor<'_>) -> ControlFlow<()> {
        for (k, v) in &self.pairs {
            f(k, v)?;
        }
        ControlFlow::Continue(())
    }

    /// Envoy `setCopy`: replace the first value, drop the others, or append.
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), NotAllowed> {
        let key = lower(key);
        let mut kept = false;
        self.pairs.retain_mut(|(k, v)| {
            if *k != *key {
                return true;
            }
            if kept {
                return false;
            }
            kept = true;
            *v = value.to_vec();
            true
        });
        if !kept {
            self.pairs.push((key.into_owned(), value.to_vec()));
        }
        Ok(())
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), NotAllowed> {
        self.pairs.push((lower(key).into_owned(), value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), NotAllowed> {
        let key = lower(key);
        self.pairs.retain(|(k, _)| *k != *key);
        Ok(())
    }

    fn replace_all(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<(), NotAllowed> {
        self.pairs = pairs
            .iter()
            .map(|(k, v)| (lower(k).into_owned(), v.to_vec()))
            .collect();
        Ok(())
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}
