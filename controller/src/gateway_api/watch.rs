//! Watches of the fleet's Gateway API objects and MCS `ServiceImport`s, fed into the
//! [`crate::store`].
//!
//! The `gateway-api` crate's types are built on another kube version, so objects are watched as
//! [`DynamicObject`]s and read into the crate's types with serde; an object that does not read
//! is logged once and left out (the others are kept). A kind whose CRD is not installed is
//! logged once and looked for again every [`ABSENT_RETRY`], so the Ingress path works alone.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::httproutes::HttpRoute;
use gateway_api::apis::standard::referencegrants::ReferenceGrant;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::refs::MCS_GROUP;
use super::{Objects, GROUP};
use crate::store::{ObjKey, Store};

/// How long to wait before looking again for a kind the API does not serve (its CRD can be
/// installed any time; a few minutes' delay is fine, a request per second is not).
pub const ABSENT_RETRY: Duration = Duration::from_secs(300);
/// How long to wait after discovery itself failed (the API server unreachable), or after a
/// watched kind went away.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(30);

/// A watched kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    GatewayClass,
    Gateway,
    HttpRoute,
    ReferenceGrant,
    ServiceImport,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::ReferenceGrant,
        Kind::ServiceImport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::ServiceImport => "ServiceImport",
        }
    }

    /// Group, plural, and the versions to use, preferred first (older CRDs serve only the
    /// older version).
    fn api(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Kind::GatewayClass => (GROUP, "gatewayclasses", &["v1"]),
            Kind::Gateway => (GROUP, "gateways", &["v1"]),
            Kind::HttpRoute => (GROUP, "httproutes", &["v1"]),
            Kind::ReferenceGrant => (GROUP, "referencegrants", &["v1", "v1beta1"]),
            Kind::ServiceImport => (MCS_GROUP, "serviceimports", &["v1beta1", "v1alpha1"]),
        }
    }

    /// The kind at `version`.
    pub fn resource(self, version: &str) -> ApiResource {
        let (group, plural, _) = self.api();
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.name()),
            plural,
        )
    }

    pub fn cluster_scoped(self) -> bool {
        self == Kind::GatewayClass
    }
}

/// One object read into its type.
#[derive(Debug, Clone)]
pub enum Object {
    Class(GatewayClass),
    /// Boxed: the largest by far.
    Gateway(Box<Gateway>),
    Route(HttpRoute),
    Grant(ReferenceGrant),
    Import(DynamicObject),
}

impl Object {
    /// Read a watched object as `kind`.
    pub fn read(kind: Kind, o: DynamicObject) -> Result<Object, serde_json::Error> {
        fn typed<T: serde::de::DeserializeOwned>(o: DynamicObject) -> serde_json::Result<T> {
            serde_json::from_value(serde_json::to_value(o)?)
        }
        Ok(match kind {
            Kind::GatewayClass => Object::Class(typed(o)?),
            Kind::Gateway => Object::Gateway(Box::new(typed(o)?)),
            Kind::HttpRoute => Object::Route(typed(o)?),
            Kind::ReferenceGrant => Object::Grant(typed(o)?),
            Kind::ServiceImport => Object::Import(o),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Class(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::Route(_) => Kind::HttpRoute,
            Object::Grant(_) => Kind::ReferenceGrant,
            Object::Import(_) => Kind::ServiceImport,
        }
    }

    pub fn key(&self) -> ObjKey {
        let (ns, name) = match self {
            Object::Class(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::Gateway(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::Route(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::Grant(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::Import(o) => (&o.metadata.namespace, &o.metadata.name),
        };
        (
            ns.clone().unwrap_or_default(),
            name.clone().unwrap_or_default(),
        )
    }

    /// Put this object into its list of `objects`.
    pub fn push_to(self, objects: &mut Objects) {
        match self {
            Object::Class(o) => objects.classes.push(o),
            Object::Gateway(o) => objects.gateways.push(*o),
            Object::Route(o) => objects.http_routes.push(o),
            Object::Grant(o) => objects.grants.push(o),
            Object::Import(o) => objects.service_imports.push(o),
        }
    }
}

/// Which version of `kind` the API serves (the first of its candidates), `None` if none is:
/// its CRD is not installed.
pub async fn served(client: &Client, kind: Kind) -> Result<Option<ApiResource>, kube::Error> {
    let (group, plural, versions) = kind.api();
    for version in versions {
        match client
            .list_api_group_resources(&format!("{group}/{version}"))
            .await
        {
            Ok(list) if list.resources.iter().any(|r| r.name == plural) => {
                return Ok(Some(kind.resource(version)));
            }
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Watch one kind into the store for good: while its CRD is absent, look again every
/// [`ABSENT_RETRY`] (saying so once); when it goes away, its objects are dropped.
pub async fn watch_kind(client: Client, store: Store, kind: Kind, errors: impl Fn(&str) + Send) {
    let mut absent_said = false;
    let mut unreadable = Unreadable::default();
    loop {
        let wait = match served(&client, kind).await {
            Ok(Some(ar)) => {
                absent_said = false;
                info!(kind = kind.name(), version = %ar.version, "watching fleet {}s", kind.name());
                watch_served(&client, &store, kind, &ar, &mut unreadable, &errors).await;
                // Answered 404: removed. Not at once: discovery and the list may disagree for a
                // moment, and that must not become a loop of requests.
                DISCOVERY_RETRY
            }
            Ok(None) => {
                // Said, and the kind emptied, once while it stays absent.
                if !absent_said {
                    info!(kind = kind.name(), retry = ?ABSENT_RETRY,
                        "the fleet API does not serve {} (CRD not installed); looking again periodically", kind.name());
                    store.replace_gateway_api(kind, Vec::new());
                    absent_said = true;
                }
                ABSENT_RETRY
            }
            Err(e) => {
                warn!(kind = kind.name(), err = %e, "API discovery failed; retrying");
                errors("gateway_api_watch");
                DISCOVERY_RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Run the watch of a served kind until the API answers that it is no longer served.
async fn watch_served(
    client: &Client,
    store: &Store,
    kind: Kind,
    ar: &ApiResource,
    unreadable: &mut Unreadable,
    errors: &impl Fn(&str),
) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(crate::watch::trim::<DynamicObject>);
    futures::pin_mut!(stream);
    let mut relist: Vec<Object> = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(o)) => relist.extend(unreadable.read(kind, o)),
            Ok(Event::InitDone) => store.replace_gateway_api(kind, std::mem::take(&mut relist)),
            Ok(Event::Apply(o)) => {
                let key = key_of(&o);
                match unreadable.read(kind, o) {
                    Some(obj) => store.apply_gateway_api(obj),
                    None => store.delete_gateway_api(kind, &key),
                }
            }
            Ok(Event::Delete(o)) => {
                let key = key_of(&o);
                unreadable.forget(&key);
                store.delete_gateway_api(kind, &key);
            }
            Err(e) if not_served(&e) => return,
            Err(e) => {
                warn!(kind = kind.name(), err = %e, "fleet {} watch failed; retrying", kind.name());
                errors("gateway_api_watch");
            }
        }
    }
}

fn key_of(o: &DynamicObject) -> ObjKey {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// The list or watch answered 404: the CRD was removed.
fn not_served(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.is_not_found(),
        _ => false,
    }
}

/// Objects that did not read, by key with the error: each is logged once, not on every relist.
#[derive(Default)]
struct Unreadable {
    said: BTreeSet<(ObjKey, String)>,
}

impl Unreadable {
    fn read(&mut self, kind: Kind, o: DynamicObject) -> Option<Object> {
        let key = key_of(&o);
        match Object::read(kind, o) {
            Ok(obj) => {
                self.forget(&key);
                Some(obj)
            }
            Err(e) => {
                let err = e.to_string();
                if self.said.insert((key.clone(), err.clone())) {
                    warn!(kind = kind.name(), namespace = %key.0, name = %key.1, %err,
                        "cannot read the fleet's {}; ignoring it", kind.name());
                }
                None
            }
        }
    }

    fn forget(&mut self, key: &ObjKey) {
        self.said.retain(|(k, _)| k != key);
    }
}
