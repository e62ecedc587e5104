//! Watches: fleet Ingresses, IngressClasses, Namespaces and Argo CD cluster Secrets, and each
//! member's Services and EndpointSlices, fed into the [`crate::store`] (the Gateway API kinds:
//! [`crate::gateway_api::watch`]).

use k8s_openapi::api::networking::v1::IngressClass;

/// IngressClass annotation that makes a class the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The `kubectl apply` copy of a whole object, kept in an annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop what fleetgate never reads before an object is stored (managed fields and the
/// last-applied copy are often most of an Ingress's size).
pub fn trim<K: kube::ResourceExt>(o: &mut K) {
    o.managed_fields_mut().clear();
    o.annotations_mut().remove(LAST_APPLIED);
}

/// Is this IngressClass marked as the cluster default?
pub fn is_default_class(c: &IngressClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tracing::{debug, warn};

use crate::derive::SERVICE_NAME_LABEL;
use crate::endpoints;
use crate::store::Store;

/// Apply one watcher event stream to the store. `init` buffers a (re)list until `InitDone`, so
/// a relist after a 410 Gone replaces the old set atomically (deleted objects disappear).
async fn drive<K, S>(
    stream: S,
    mut on_event: impl FnMut(Event<K>),
    mut on_error: impl FnMut(&watcher::Error),
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => on_event(ev),
            Err(e) => on_error(&e),
        }
    }
}

/// Collects a relist.
struct Relist<K> {
    buf: Vec<K>,
}

impl<K> Relist<K> {
    fn new() -> Self {
        Relist { buf: Vec::new() }
    }
}

/// What the store does with one kind of fleet object.
struct Sink<K> {
    what: &'static str,
    metric: &'static str,
    replace: fn(&Store, Vec<K>),
    apply: fn(&Store, K),
    delete: fn(&Store, &K),
}

/// Watch all objects of one fleet kind (all namespaces) into the store until the stream ends.
async fn watch_fleet_kind<K>(
    client: Client,
    store: Store,
    errors: impl Fn(&str) + Send,
    sink: Sink<K>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim::<K>);
    let mut relist = Relist::new();
    drive(
        stream,
        |ev| match ev {
            Event::Init => relist.buf.clear(),
            Event::InitApply(o) => relist.buf.push(o),
            Event::InitDone => (sink.replace)(&store, std::mem::take(&mut relist.buf)),
            Event::Apply(o) => (sink.apply)(&store, o),
            Event::Delete(o) => (sink.delete)(&store, &o),
        },
        |e| {
            warn!(err = %e, "fleet {} watch failed; retrying", sink.what);
            errors(sink.metric);
        },
    )
    .await;
}

/// Watch fleet Ingresses (all namespaces) into the store until the stream ends.
pub async fn watch_ingresses(client: Client, store: Store, errors: impl Fn(&str) + Send) {
    let sink = Sink {
        what: "Ingress",
        metric: "ingress_watch",
        replace: |s, v| s.replace_ingresses(v),
        apply: |s, o| s.apply_ingress(o),
        delete: |s, o| s.delete_ingress(o),
    };
    watch_fleet_kind::<Ingress>(client, store, errors, sink).await;
}

/// Watch fleet IngressClasses (to learn whether ours is the default class).
pub async fn watch_classes(client: Client, store: Store, errors: impl Fn(&str) + Send) {
    let sink = Sink {
        what: "IngressClass",
        metric: "ingressclass_watch",
        replace: |s, v| s.replace_classes(v),
        apply: |s, o| s.apply_class(o),
        delete: |s, o| s.delete_class(o),
    };
    watch_fleet_kind::<IngressClass>(client, store, errors, sink).await;
}

/// Watch fleet Namespaces (their labels select routes for Gateway listeners).
pub async fn watch_namespaces(client: Client, store: Store, errors: impl Fn(&str) + Send) {
    let sink = Sink {
        what: "Namespace",
        metric: "namespace_watch",
        replace: |s, v| s.replace_namespaces(v),
        apply: |s, o| s.apply_namespace(o),
        delete: |s, o| s.delete_namespace(o),
    };
    watch_fleet_kind::<Namespace>(client, store, errors, sink).await;
}

/// What the store does with one kind of member object.
struct MemberSink<K> {
    what: &'static str,
    /// Reduce one object of a relist as it arrives.
    add: fn(&mut endpoints::Relist, &K),
    replace: fn(&Store, &str, endpoints::Relist),
    apply: fn(&Store, &str, K),
    delete: fn(&Store, &str, &K),
}

/// Watch one kind of a member's objects (all namespaces). Errors start the member's grace
/// period ([`crate::health`]); events end it.
async fn watch_member_kind<K>(
    member: &str,
    client: Client,
    store: &Store,
    errors: &(impl Fn(&str) + Send + Sync),
    cfg: watcher::Config,
    sink: MemberSink<K>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher::watcher(api, cfg).default_backoff();
    let mut relist = endpoints::Relist::default();
    drive(
        stream,
        |ev| match ev {
            // Init comes before the list request: it is not evidence of contact.
            Event::Init => {
                debug!(%member, what = sink.what, "member relist started");
                relist = endpoints::Relist::default();
            }
            Event::InitApply(o) => (sink.add)(&mut relist, &o),
            Event::InitDone => (sink.replace)(store, member, std::mem::take(&mut relist)),
            Event::Apply(o) => (sink.apply)(store, member, o),
            Event::Delete(o) => (sink.delete)(store, member, &o),
        },
        |e| {
            warn!(%member, err = %e, "member {} watch failed; retrying", sink.what);
            store.member_failed(member, tokio::time::Instant::now());
            errors("member_watch");
        },
    )
    .await;
}

/// Watch one member's Services and EndpointSlices (those owned by a Service) until the
/// streams end.
pub async fn watch_member(
    member: String,
    client: Client,
    store: Store,
    errors: impl Fn(&str) + Send + Sync,
) {
    let slices = MemberSink::<EndpointSlice> {
        what: "EndpointSlice",
        add: endpoints::Relist::add_slice,
        replace: |s, m, v| s.replace_slices(m, v),
        apply: |s, m, o| s.apply_slice(m, o),
        delete: |s, m, o| s.delete_slice(m, o),
    };
    let services = MemberSink::<Service> {
        what: "Service",
        add: endpoints::Relist::add_service,
        replace: |s, m, v| s.replace_services(m, v),
        apply: |s, m, o| s.apply_service(m, o),
        delete: |s, m, o| s.delete_service(m, o),
    };
    let slice_cfg = watcher::Config::default().labels(SERVICE_NAME_LABEL);
    futures::join!(
        watch_member_kind(&member, client.clone(), &store, &errors, slice_cfg, slices),
        watch_member_kind(
            &member,
            client,
            &store,
            &errors,
            watcher::Config::default(),
            services
        ),
    );
}

/// Watch the ConfigMap our IngressClass names in `spec.parameters`, following the reference
/// as the class changes (checked every few seconds; the ConfigMap itself is watched).
pub async fn watch_parameters(
    client: Client,
    store: Store,
    class: String,
    errors: impl Fn(&str) + Send + Sync + Clone + 'static,
) {
    let mut current: Option<(String, String)> = None;
    let mut task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let wanted = store
            .class(&class)
            .and_then(|c| crate::settings::parameters_ref(&c))
            .and_then(Result::ok);
        if wanted != current {
            if let Some(t) = task.take() {
                t.abort();
            }
            store.set_parameters(None);
            task = wanted.clone().map(|(ns, name)| {
                let (client, store, errors) = (client.clone(), store.clone(), errors.clone());
                tokio::spawn(watch_one_configmap(client, store, ns, name, errors))
            });
            current = wanted;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

async fn watch_one_configmap(
    client: Client,
    store: Store,
    ns: String,
    name: String,
    errors: impl Fn(&str) + Send,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, cfg).default_backoff();
    let mut seen = None;
    drive(
        stream,
        |ev| match ev {
            Event::Init => seen = None,
            Event::InitApply(c) => seen = Some(c),
            Event::InitDone => store.set_parameters(seen.take()),
            Event::Apply(c) => store.set_parameters(Some(c)),
            Event::Delete(_) => store.set_parameters(None),
        },
        |e| {
            warn!(%ns, %name, err = %e, "parameters ConfigMap watch failed; retrying");
            errors("parameters_watch");
        },
    )
    .await;
}
