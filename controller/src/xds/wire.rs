//! A state-of-the-world `DiscoveryResponse` written straight from a snapshot's encoded
//! resources. Its bytes are exactly prost's encoding of the typed message (the same fields in
//! the same order), but each resource is copied from the bytes encoded once at build time
//! instead of being cloned into an `Any` and encoded again on every push: a push of 200,000
//! load assignments is one pass of copies into the gRPC frame.

use std::sync::Arc;

use bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use super::pb::envoy::service::discovery::v3::DiscoveryResponse;
use super::snapshot::{Entry, TypeSnapshot};

// Field tags of `DiscoveryResponse` and of `google.protobuf.Any`.
const VERSION_INFO: u32 = 1;
const RESOURCES: u32 = 2;
const TYPE_URL: u32 = 4;
const NONCE: u32 = 5;
const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;

/// One SotW response: some (or all) resources of a type snapshot, shared, not copied.
#[derive(Debug, Clone)]
pub struct WireResponse {
    pub version_info: String,
    pub type_url: &'static str,
    pub nonce: String,
    resources: Arc<TypeSnapshot>,
    /// Positions of the resources sent in `resources` (`None`: all of them).
    at: Option<Arc<[usize]>>,
}

impl WireResponse {
    pub fn new(
        type_url: &'static str,
        resources: Arc<TypeSnapshot>,
        at: Option<Arc<[usize]>>,
        nonce: String,
    ) -> Self {
        WireResponse {
            version_info: resources.version.clone(),
            type_url,
            nonce,
            resources,
            at,
        }
    }

    /// The resources sent, in order.
    pub fn entries(&self) -> Box<dyn Iterator<Item = &Entry> + '_> {
        let all = &self.resources.entries;
        match &self.at {
            None => Box::new(all.iter()),
            Some(at) => Box::new(at.iter().map(|i| all.get(*i))),
        }
    }

    pub fn len(&self) -> usize {
        self.at
            .as_ref()
            .map_or(self.resources.entries.len(), |a| a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn any_len(&self, e: &Entry) -> usize {
        field_len(ANY_TYPE_URL, self.type_url.len()) + field_len(ANY_VALUE, e.value().len())
    }

    /// Bytes [`WireResponse::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let resources: usize = self.entries().map(|e| message_len(self.any_len(e))).sum();
        field_len(VERSION_INFO, self.version_info.len())
            + resources
            + field_len(TYPE_URL, self.type_url.len())
            + field_len(NONCE, self.nonce.len())
    }

    /// Write the response as prost writes a `DiscoveryResponse` (fields by tag, empty
    /// strings left out).
    pub fn encode(&self, buf: &mut impl BufMut) {
        put_field(VERSION_INFO, self.version_info.as_bytes(), buf);
        for e in self.entries() {
            encode_key(RESOURCES, WireType::LengthDelimited, buf);
            encode_varint(self.any_len(e) as u64, buf);
            put_field(ANY_TYPE_URL, self.type_url.as_bytes(), buf);
            put_field(ANY_VALUE, e.value(), buf);
        }
        put_field(TYPE_URL, self.type_url.as_bytes(), buf);
        put_field(NONCE, self.nonce.as_bytes(), buf);
    }

    /// The typed message these bytes encode (for tests and logs; the server sends bytes).
    pub fn to_typed(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: self.version_info.clone(),
            resources: self.entries().map(|e| e.any(self.type_url)).collect(),
            type_url: self.type_url.to_string(),
            nonce: self.nonce.clone(),
            ..DiscoveryResponse::default()
        }
    }
}

/// A nested message field of `len` bytes (written even when empty, as a repeated element is).
fn message_len(len: usize) -> usize {
    key_len(RESOURCES) + encoded_len_varint(len as u64) + len
}

/// A string or bytes field of `len` bytes; proto3 leaves an empty one out.
fn field_len(tag: u32, len: usize) -> usize {
    match len {
        0 => 0,
        n => key_len(tag) + encoded_len_varint(n as u64) + n,
    }
}

fn put_field(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use prost::{Message, Name};

    use super::super::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use super::super::pb::google::protobuf::Any;
    use super::super::ENDPOINT;
    use super::*;

    fn cla(name: &str) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            ..ClusterLoadAssignment::default()
        }
    }

    /// Three load assignments, one of them with a name long enough for two-byte lengths.
    fn snapshot() -> (Vec<ClusterLoadAssignment>, Arc<TypeSnapshot>) {
        let long = "c".repeat(300);
        let messages = vec![cla("a"), cla(&long), cla("b")];
        let entries = messages
            .iter()
            .map(|m| Entry::encode(&m.cluster_name, m))
            .collect();
        let mut sorted = messages.clone();
        sorted.sort_by(|x, y| x.cluster_name.cmp(&y.cluster_name));
        (sorted, Arc::new(TypeSnapshot::new(entries)))
    }

    /// The response the typed path builds from the messages themselves.
    fn typed(version: &str, messages: &[&ClusterLoadAssignment]) -> DiscoveryResponse {
        let any = |m: &&ClusterLoadAssignment| Any {
            type_url: ClusterLoadAssignment::type_url(),
            value: m.encode_to_vec(),
        };
        DiscoveryResponse {
            version_info: version.to_string(),
            resources: messages.iter().map(any).collect(),
            type_url: ENDPOINT.to_string(),
            nonce: "7".to_string(),
            ..DiscoveryResponse::default()
        }
    }

    fn bytes(r: &WireResponse) -> Vec<u8> {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        buf
    }

    #[test]
    fn all_resources_are_the_bytes_prost_writes_for_the_typed_response() {
        let (messages, ts) = snapshot();
        let r = WireResponse::new(ENDPOINT, Arc::clone(&ts), None, "7".into());
        let want = typed(&ts.version, &messages.iter().collect::<Vec<_>>());
        let got = bytes(&r);
        assert_eq!(DiscoveryResponse::decode(got.as_slice()).unwrap(), want);
        assert_eq!(got, want.encode_to_vec(), "byte for byte");
        assert_eq!(r.to_typed(), want);
    }

    #[test]
    fn a_selection_sends_those_resources_in_its_order() {
        let (messages, ts) = snapshot();
        let at: Arc<[usize]> = Arc::from(vec![2, 0]);
        let r = WireResponse::new(ENDPOINT, Arc::clone(&ts), Some(at), "7".into());
        let want = typed(&ts.version, &[&messages[2], &messages[0]]);
        assert_eq!(r.len(), 2);
        assert_eq!(
            DiscoveryResponse::decode(bytes(&r).as_slice()).unwrap(),
            want
        );
    }

    #[test]
    fn an_empty_selection_is_an_empty_response_with_its_version() {
        let (_, ts) = snapshot();
        let r = WireResponse::new(
            ENDPOINT,
            Arc::clone(&ts),
            Some(Arc::from(vec![])),
            "7".into(),
        );
        assert!(r.is_empty());
        let want = typed(&ts.version, &[]);
        assert_eq!(bytes(&r), want.encode_to_vec());
    }
}
