//! Build, check and encode a snapshot in one pass: each batch of resources is encoded and
//! checked as soon as it is built, then dropped, so a fleet's messages are never all held at
//! once (at 600,000 resources holding them, and a copy to encode, cost gigabytes of page
//! faults). Batches are built and encoded on every core (rayon); the checks that need the
//! whole snapshot run on the caller's thread over names.

use std::collections::BTreeMap;

use super::pb::envoy::config::cluster::v3::Cluster;
use super::pb::envoy::config::core::v3::TypedExtensionConfig;
use super::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use super::pb::envoy::config::listener::v3::Listener;
use super::pb::envoy::config::route::v3::RouteConfiguration;
use super::resources::{emit, DirectTarget, Sink, XdsOptions};
use super::snapshot::{Entry, Snapshot};
use super::validate::{Checker, ClusterRefs};
use super::XdsError;
use crate::derive::{Derived, MemberSnapshot};

/// A checked, encoded snapshot and what later endpoint-only updates need.
pub struct Encoded {
    pub snapshot: Snapshot,
    /// Per direct (EDS) cluster, where its endpoints come from (see
    /// [`super::endpoint_entries`]).
    pub direct: BTreeMap<String, DirectTarget>,
    /// Mirror upstreams that name no Service any member has.
    pub unresolved_mirrors: Vec<String>,
}

/// [`super::build`] then [`Snapshot::new`], without holding the messages.
pub fn build_snapshot(
    derived: &Derived,
    members: &[MemberSnapshot],
    opts: &XdsOptions,
) -> Result<Encoded, XdsError> {
    let mut e = Encoder::default();
    let emitted = emit(derived, members, opts, &mut e)?;
    e.checker.finish(derived.config())?;
    Ok(Encoded {
        snapshot: Snapshot::from_entries([
            e.clusters,
            e.endpoints,
            e.listeners,
            e.routes,
            e.extensions,
        ]),
        direct: emitted.direct,
        unresolved_mirrors: emitted.unresolved_mirrors,
    })
}

#[derive(Default)]
struct Encoder {
    checker: Checker,
    clusters: Vec<Entry>,
    endpoints: Vec<Entry>,
    listeners: Vec<Entry>,
    routes: Vec<Entry>,
    extensions: Vec<Entry>,
}

impl Sink for Encoder {
    type Direct = ((Entry, ClusterRefs), Entry);
    type Cluster = (Entry, ClusterRefs);
    fn keep_direct(c: Cluster, a: ClusterLoadAssignment) -> Self::Direct {
        (encode_cluster(c), Entry::encode(&a.cluster_name, &a))
    }
    fn keep_cluster(c: Cluster) -> Self::Cluster {
        encode_cluster(c)
    }
    fn reserve(&mut self, direct: usize, clusters: usize) {
        self.clusters.reserve(direct + clusters);
        self.endpoints.reserve(direct);
        self.checker.reserve(direct, clusters);
    }
    fn direct(&mut self, batch: Vec<Self::Direct>) {
        for ((c, refs), a) in batch {
            self.checker.cluster(&c.name, refs);
            self.checker.assignment(&a.name);
            self.clusters.push(c);
            self.endpoints.push(a);
        }
    }
    fn clusters(&mut self, batch: Vec<Self::Cluster>) {
        for (c, refs) in batch {
            self.checker.cluster(&c.name, refs);
            self.clusters.push(c);
        }
    }
    fn listener(&mut self, l: Listener) {
        self.checker.listener(&l);
        self.listeners.push(Entry::encode(&l.name, &l));
    }
    fn route(&mut self, r: RouteConfiguration) {
        self.checker.route(&r);
        self.routes.push(Entry::encode(&r.name, &r));
    }
    fn extension(&mut self, x: TypedExtensionConfig) {
        self.checker.extension(&x);
        self.extensions.push(Entry::encode(&x.name, &x));
    }
}

/// A cluster encoded, and what the checks need of it (on the core that built it, where the
/// message is dropped too).
fn encode_cluster(c: Cluster) -> (Entry, ClusterRefs) {
    let e = Entry::encode(&c.name, &c);
    let refs = ClusterRefs::of(&c, &e.name);
    (e, refs)
}
