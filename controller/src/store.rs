//! Indexed controller state fed by the watches: fleet Ingresses and IngressClasses, Gateway API
//! objects and Namespace labels, and per member its Services and EndpointSlices (reduced to a
//! [`MemberIndex`]) and watch health. [`Store::snapshot`] hands derive a consistent copy;
//! [`Store::changed`] wakes the derive loop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::derive::{Contact, MemberSnapshot};
use crate::endpoints::{MemberIndex, Relist};
use crate::gateway_api::watch::{Kind, Object};
use crate::health::MemberHealth;

/// `namespace/name`.
pub type ObjKey = (String, String);

fn key_of<K: ResourceExt>(o: &K) -> ObjKey {
    (o.namespace().unwrap_or_default(), o.name_any())
}

#[derive(Debug, Default)]
struct MemberState {
    zone: Option<String>,
    gateway: Option<std::net::SocketAddr>,
    /// Shared with snapshots; copied on write only while a snapshot still holds it.
    index: Arc<MemberIndex>,
    health: MemberHealth,
}

#[derive(Debug, Default)]
struct State {
    ingresses: BTreeMap<ObjKey, Arc<Ingress>>,
    classes: BTreeMap<String, IngressClass>,
    /// The ConfigMap our IngressClass names in `spec.parameters` (watched alone).
    parameters: Option<ConfigMap>,
    fleet_synced: bool,
    members: BTreeMap<String, MemberState>,
    gateway_api: BTreeMap<Kind, BTreeMap<ObjKey, Object>>,
    /// Namespace labels, by name.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The Gateway API kinds listed (or found not served), and whether Namespaces were.
    gateway_api_listed: BTreeSet<Kind>,
    namespaces_listed: bool,
}

/// What derive needs, copied out of the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<IngressClass>,
    pub config_maps: Vec<ConfigMap>,
    pub members: Vec<MemberSnapshot>,
    pub fleet_synced: bool,
    pub gateway_api: crate::gateway_api::Objects,
    /// Namespace labels, by name (what `allowedRoutes.namespaces.selector` selects on).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Every Gateway API kind and the Namespaces listed once: until then a status would be
    /// judged on part of the fleet (a route without its ReferenceGrant, say).
    pub gateway_api_listed: bool,
}

/// Shared state; cheap to clone.
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (each update is one insert/remove), so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        self.notify.notify_one();
    }

    /// Wait until something changed.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    pub fn apply_ingress(&self, i: Ingress) {
        self.lock().ingresses.insert(key_of(&i), Arc::new(i));
        self.touch();
    }
    pub fn delete_ingress(&self, i: &Ingress) {
        self.lock().ingresses.remove(&key_of(i));
        self.touch();
    }
    /// Replace all Ingresses after a (re)list.
    pub fn replace_ingresses(&self, all: Vec<Ingress>) {
        let mut s = self.lock();
        s.ingresses = all.into_iter().map(|i| (key_of(&i), Arc::new(i))).collect();
        s.fleet_synced = true;
        drop(s);
        self.touch();
    }
    pub fn apply_class(&self, c: IngressClass) {
        self.lock().classes.insert(c.name_any(), c);
        self.touch();
    }
    pub fn delete_class(&self, c: &IngressClass) {
        self.lock().classes.remove(&c.name_any());
        self.touch();
    }
    pub fn replace_classes(&self, all: Vec<IngressClass>) {
        self.lock().classes = all.into_iter().map(|c| (c.name_any(), c)).collect();
        self.touch();
    }

    pub fn apply_gateway_api(&self, o: Object) {
        let mut s = self.lock();
        s.gateway_api
            .entry(o.kind())
            .or_default()
            .insert(o.key(), o);
        drop(s);
        self.touch();
    }
    pub fn delete_gateway_api(&self, kind: Kind, key: &ObjKey) {
        if let Some(objects) = self.lock().gateway_api.get_mut(&kind) {
            objects.remove(key);
        }
        self.touch();
    }
    /// Replace all objects of one kind after a (re)list.
    pub fn replace_gateway_api(&self, kind: Kind, all: Vec<Object>) {
        let all = all.into_iter().map(|o| (o.key(), o)).collect();
        let mut s = self.lock();
        s.gateway_api.insert(kind, all);
        s.gateway_api_listed.insert(kind);
        drop(s);
        self.touch();
    }

    /// Every Gateway API kind listed and empty, as when none of their CRDs is installed.
    pub fn no_gateway_api(&self) {
        for kind in Kind::ALL {
            self.replace_gateway_api(kind, Vec::new());
        }
        self.replace_namespaces(Vec::new());
    }

    /// Only its labels are kept: other changes of a Namespace (its status, annotations) wake
    /// nothing.
    pub fn apply_namespace(&self, n: Namespace) {
        let labels = n.labels().clone();
        let before = self.lock().namespaces.insert(n.name_any(), labels.clone());
        if before != Some(labels) {
            self.touch();
        }
    }
    pub fn delete_namespace(&self, n: &Namespace) {
        self.lock().namespaces.remove(&n.name_any());
        self.touch();
    }
    pub fn replace_namespaces(&self, all: Vec<Namespace>) {
        let mut s = self.lock();
        s.namespaces = all
            .into_iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        s.namespaces_listed = true;
        drop(s);
        self.touch();
    }

    /// The parameters ConfigMap (or its absence).
    pub fn set_parameters(&self, cm: Option<ConfigMap>) {
        self.lock().parameters = cm;
        self.touch();
    }
    /// Our IngressClass, if the fleet has it.
    pub fn class(&self, name: &str) -> Option<IngressClass> {
        self.lock().classes.get(name).cloned()
    }

    /// Add or update a member (its endpoints are kept if it exists).
    pub fn upsert_member(
        &self,
        id: &str,
        zone: Option<String>,
        gateway: Option<std::net::SocketAddr>,
    ) {
        let mut s = self.lock();
        let m = s.members.entry(id.to_string()).or_default();
        m.zone = zone;
        m.gateway = gateway;
        self.touch();
    }
    pub fn remove_member(&self, id: &str) {
        self.lock().members.remove(id);
        self.touch();
    }
    pub fn member_ids(&self) -> Vec<String> {
        self.lock().members.keys().cloned().collect()
    }

    fn with_member(&self, id: &str, f: impl FnOnce(&mut MemberState)) {
        let mut s = self.lock();
        if let Some(m) = s.members.get_mut(id) {
            f(m);
        }
        drop(s);
        self.touch();
    }
    pub fn apply_slice(&self, member: &str, e: EndpointSlice) {
        self.with_member(member, |m| {
            m.health.on_event();
            Arc::make_mut(&mut m.index).apply_slice(&e);
        });
    }
    pub fn delete_slice(&self, member: &str, e: &EndpointSlice) {
        self.with_member(member, |m| {
            m.health.on_event();
            Arc::make_mut(&mut m.index).delete_slice(e);
        });
    }
    /// Replace a member's slices after a (re)list. The member counts as synced once its
    /// slices are listed (a Service-less member simply has nothing to route).
    pub fn replace_slices(&self, member: &str, all: Relist) {
        self.with_member(member, |m| {
            Arc::make_mut(&mut m.index).replace_slices(all);
            m.health.on_synced();
        });
    }
    pub fn apply_service(&self, member: &str, s: Service) {
        self.with_member(member, |m| {
            m.health.on_event();
            Arc::make_mut(&mut m.index).apply_service(&s);
        });
    }
    pub fn delete_service(&self, member: &str, s: &Service) {
        self.with_member(member, |m| {
            m.health.on_event();
            Arc::make_mut(&mut m.index).delete_service(s);
        });
    }
    pub fn replace_services(&self, member: &str, all: Relist) {
        self.with_member(member, |m| {
            m.health.on_event();
            Arc::make_mut(&mut m.index).replace_services(all);
        });
    }
    /// A member's watch made progress without a change (e.g. a relist started).
    pub fn member_ok(&self, member: &str) {
        self.with_member(member, |m| m.health.on_event());
    }
    pub fn member_failed(&self, member: &str, now: Instant) {
        self.with_member(member, |m| m.health.on_error(now));
    }

    /// Member contact as of `now`.
    pub fn contacts(&self, now: Instant, grace: Duration) -> BTreeMap<String, Contact> {
        self.lock()
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.health.contact(now, grace)))
            .collect()
    }

    /// The next instant a member's contact changes without an event (its grace period ends).
    pub fn next_deadline(&self, now: Instant, grace: Duration) -> Option<Instant> {
        self.lock()
            .members
            .values()
            .filter_map(|m| m.health.lost_at(grace))
            .filter(|t| *t > now)
            .min()
    }

    /// True once the fleet and every member have listed at least once.
    pub fn synced(&self) -> bool {
        let s = self.lock();
        s.fleet_synced && s.members.values().all(|m| m.health.synced)
    }

    pub fn snapshot(&self, now: Instant, grace: Duration) -> Snapshot {
        let s = self.lock();
        Snapshot {
            ingresses: s.ingresses.values().cloned().collect(),
            classes: s.classes.values().cloned().collect(),
            config_maps: s.parameters.iter().cloned().collect(),
            fleet_synced: s.fleet_synced,
            gateway_api: gateway_api_objects(&s.gateway_api),
            namespaces: s.namespaces.clone(),
            gateway_api_listed: s.namespaces_listed
                && Kind::ALL.iter().all(|k| s.gateway_api_listed.contains(k)),
            members: s
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    id: id.clone(),
                    zone: m.zone.clone(),
                    contact: m.health.contact(now, grace),
                    index: Arc::clone(&m.index),
                    gateway: m.gateway,
                })
                .collect(),
        }
    }
}

fn gateway_api_objects(
    by_kind: &BTreeMap<Kind, BTreeMap<ObjKey, Object>>,
) -> crate::gateway_api::Objects {
    let mut objects = crate::gateway_api::Objects::default();
    for o in by_kind.values().flat_map(BTreeMap::values) {
        o.clone().push_to(&mut objects);
    }
    objects
}
