//! Incremental (delta) ADS: per stream and type the server remembers which resources the
//! client has at which version (their digests), and sends only those that changed, and the
//! names of those that went away. A pod replaced in a fleet of 200,000 load assignments is one
//! resource on the wire instead of all of them.
//!
//! Same rules as [`super::server`]: a NACK is counted and not answered; types are pushed in
//! [`super::TYPES`] order; clusters and endpoints are only removed once the listener, routes
//! and plugin have no unacknowledged update in flight.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;
use tracing::{debug, warn};

use super::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use super::server::{note_node, Gone, Protocol, Snapshots, XdsMetrics};
use super::snapshot::{Entry, Snapshot, TypeSnapshot};
use super::{CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE, TYPES};

pub(crate) type DeltaMsg = Result<DeltaDiscoveryResponse, Status>;

/// One type on one stream.
#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client has: name -> digest.
    known: HashMap<Arc<str>, u64>,
    /// Nonce of the response not yet acknowledged.
    pending: Option<String>,
    /// Compare every resource on the next push (new subscription, or changes skipped while a
    /// response was pending); otherwise only what differs from the last snapshot is looked at.
    dirty: bool,
    /// Removals were deferred (make before break): look for them on the next push.
    held_removals: bool,
}

impl Subscription {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Entries of `new` that are not in `old` as they are, and names of `old` not in `new`; both
/// lists are sorted by name. With the same names, only the chunks that are not shared are
/// compared.
fn diff<'a>(old: &TypeSnapshot, new: &'a TypeSnapshot) -> (Vec<&'a Entry>, Vec<Arc<str>>) {
    if std::ptr::eq(old, new) {
        return (Vec::new(), Vec::new());
    }
    if new.same_names(old) {
        let pairs = new.entries.changed_chunks(&old.entries);
        let pairs = pairs.flat_map(|(n, o)| n.iter().zip(o));
        let changed = pairs
            .filter(|(n, o)| o.digest() != n.digest())
            .map(|(n, _)| n);
        return (changed.collect(), Vec::new());
    }
    let (mut changed, mut gone) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (old.entries.iter().peekable(), new.entries.iter().peekable());
    loop {
        let order = match (old.peek(), new.peek()) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => gone.extend(old.next().map(|o| Arc::clone(&o.name))),
            Ordering::Greater => changed.extend(new.next()),
            Ordering::Equal => {
                let (o, n) = (old.next(), new.next());
                if let (Some(o), Some(n)) = (o, n) {
                    if o.digest() != n.digest() {
                        changed.push(n);
                    }
                }
            }
        }
    }
    (changed, gone)
}

pub(crate) struct DeltaStream {
    pub snapshots: Snapshots,
    pub metrics: XdsMetrics,
    pub tx: mpsc::Sender<DeltaMsg>,
    subs: BTreeMap<String, Subscription>,
    nonce: u64,
    node: Option<String>,
    /// The snapshot of the last push (its types are shared with the next one when unchanged).
    last: Option<Arc<Snapshot>>,
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    const NAME: &'static str = "delta ADS";

    fn snapshots(&mut self) -> &mut Snapshots {
        &mut self.snapshots
    }

    fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<(), Gone> {
        DeltaStream::on_request(self, req).await
    }

    async fn on_snapshot(&mut self) -> Result<(), Gone> {
        self.snapshots.borrow_and_update();
        self.push().await
    }
}

impl DeltaStream {
    pub fn new(snapshots: Snapshots, metrics: XdsMetrics, tx: mpsc::Sender<DeltaMsg>) -> Self {
        DeltaStream {
            snapshots,
            metrics,
            tx,
            subs: BTreeMap::new(),
            nonce: 0,
            node: None,
            last: None,
        }
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<(), Gone> {
        note_node(&mut self.node, req.node.as_ref(), "delta ADS");
        if !TYPES.contains(&req.type_url.as_str()) {
            debug!(type_url = %req.type_url, "type not served; ignored");
            return Ok(());
        }
        let first = !self.subs.contains_key(&req.type_url);
        let sub = self.subs.entry(req.type_url.clone()).or_default();
        if !req.response_nonce.is_empty() {
            if sub.pending.as_deref() != Some(&req.response_nonce) {
                return Ok(()); // an older response's answer
            }
            sub.pending = None;
            match &req.error_detail {
                Some(err) => {
                    self.metrics.nacked(&req.type_url);
                    warn!(node = ?self.node, type_url = %req.type_url, code = err.code,
                        "delta xDS update rejected (NACK): {}; not re-sent until it changes",
                        err.message);
                }
                None => {
                    self.metrics.acks.inc();
                }
            }
        }
        sub.dirty |= first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty()
            || !req.initial_resource_versions.is_empty();
        // An empty first subscription is the legacy wildcard.
        if first && req.resource_names_subscribe.is_empty() {
            sub.wildcard = true;
        }
        for n in req.resource_names_subscribe {
            if n == "*" {
                sub.wildcard = true;
            } else {
                sub.names.insert(n);
            }
        }
        for n in req.resource_names_unsubscribe {
            if n == "*" {
                sub.wildcard = false;
            }
            sub.known.remove(n.as_str());
            sub.names.remove(&n);
        }
        for (name, version) in req.initial_resource_versions {
            let digest = u64::from_str_radix(&version, 16).unwrap_or_default();
            sub.known.insert(Arc::from(name), digest);
        }
        self.push().await
    }

    /// Send each type's changes, in make-before-break order.
    async fn push(&mut self) -> Result<(), Gone> {
        let Some(snapshot) = self.snapshots.borrow().clone() else {
            return Ok(());
        };
        let last = self.last.replace(Arc::clone(&snapshot));
        for type_url in TYPES {
            let may_remove = !matches!(type_url, CLUSTER | ENDPOINT) || !self.users_busy(&snapshot);
            if let Some(response) = self.changes(&snapshot, last.as_deref(), type_url, may_remove) {
                self.send(response).await?;
            }
        }
        Ok(())
    }

    /// Whether the listener, routes or plugin have an update in flight or to come.
    fn users_busy(&self, snapshot: &Snapshot) -> bool {
        [LISTENER, ROUTE, EXTENSION]
            .iter()
            .any(|t| match self.subs.get(*t) {
                Some(sub) => sub.pending.is_some() || self.outdated(snapshot, t),
                None => false,
            })
    }

    fn outdated(&self, snapshot: &Snapshot, type_url: &str) -> bool {
        let (Some(sub), Some(ts)) = (self.subs.get(type_url), snapshot.get(type_url)) else {
            return false;
        };
        let mut wanted = ts.entries.iter().filter(|e| sub.wants(&e.name));
        wanted.any(|e| sub.known.get(&e.name) != Some(&e.digest()))
    }

    /// The resources of `type_url` the client lacks or has at another version, and (when
    /// `may_remove`) the names it has that are gone; `None` when there is nothing to send or a
    /// response is still unacknowledged. Only what changed since `last` is compared unless the
    /// subscription needs a full comparison.
    fn changes(
        &mut self,
        snapshot: &Snapshot,
        last: Option<&Snapshot>,
        type_url: &str,
        may_remove: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let ts = snapshot.get(type_url)?;
        let sub = self.subs.get_mut(type_url)?;
        if sub.pending.is_some() {
            sub.dirty = true; // one response in flight per type; the ACK brings the rest
            return None;
        }
        let old = last.and_then(|l| l.get(type_url));
        let full = sub.dirty || (may_remove && sub.held_removals);
        let (candidates, gone): (Vec<&Entry>, Vec<Arc<str>>) = match old {
            Some(old) if !full => diff(old, ts),
            _ => {
                let present = |n: &str| ts.entries.find(n).is_some();
                let gone = sub.known.keys().filter(|n| !present(n)).cloned().collect();
                (ts.entries.iter().collect(), gone)
            }
        };
        sub.dirty = false;
        let mut resources = Vec::new();
        for e in candidates {
            if sub.wants(&e.name) && sub.known.get(&e.name) != Some(&e.digest()) {
                sub.known.insert(Arc::clone(&e.name), e.digest());
                resources.push(Resource {
                    name: e.name.to_string(),
                    version: e.version(),
                    resource: Some(e.any(type_url)),
                    ..Resource::default()
                });
            }
        }
        let mut removed = Vec::new();
        sub.held_removals = !may_remove && (sub.held_removals || !gone.is_empty());
        if may_remove {
            for name in gone {
                if sub.known.remove(&name).is_some() {
                    removed.push(name.to_string());
                }
            }
            removed.sort();
        }
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        sub.pending = Some(nonce.clone());
        Some(DeltaDiscoveryResponse {
            system_version_info: ts.version.clone(),
            resources,
            removed_resources: removed,
            type_url: type_url.to_string(),
            nonce,
            ..DeltaDiscoveryResponse::default()
        })
    }

    async fn send(&mut self, response: DeltaDiscoveryResponse) -> Result<(), Gone> {
        debug!(type_url = %response.type_url, n = response.resources.len(),
            removed = response.removed_resources.len(), "delta push");
        let type_url = response.type_url.clone();
        self.tx.send(Ok(response)).await.map_err(|_| Gone)?;
        self.metrics.pushed(&type_url);
        Ok(())
    }
}
