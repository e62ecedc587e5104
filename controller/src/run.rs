//! The `run` command: watches, member clients, the derive loop, hand-off, leader election,
//! Ingress status and Events. Both replicas watch, derive and serve the config endpoint; only
//! the Lease holder writes Ingress status, Events and the WasmPlugin.

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_plugin::config::{self as pcfg, ClusterState};
use fleetgate_plugin::failover;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::admin::{self, Admin, Metrics};
use crate::cli;
use crate::derive::OriginKind;
use crate::derive::{DeriveError, DeriveOptions, Derived, Deriver, IngressKey, Severity};
use crate::gateway_api;
use crate::handoff::{self, ConfigCell, Endpoint};
use crate::leader::Elector;
use crate::members::{self, MemberSpec};
use crate::serve::{self, XdsServe};
use crate::store::{Snapshot, Store};
use crate::watch;
use crate::xds::{self, feed, feed::Feed};

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub derive: DeriveOptions,
    pub members_file: Option<PathBuf>,
    /// Namespace of Argo CD cluster Secrets; `None` = do not watch Secrets.
    pub secrets_namespace: Option<String>,
    pub grace: Duration,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub token: Option<String>,
    pub out: Option<PathBuf>,
    /// `namespace/name` of a Higress WasmPlugin to write.
    pub wasmplugin: Option<(String, String)>,
    /// `--higress`: generate and apply the Higress wiring in the fleet (gateway) cluster.
    pub higress: Option<crate::higress::HigressOptions>,
    /// `status.loadBalancer.ingress[0]` (IP or hostname) for our Ingresses.
    pub status_address: Option<String>,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// The ADS server, when serving xDS.
    pub xds: Option<XdsServe>,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("fleet client: {0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Members(#[from] members::MemberError),
    #[error("listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Run until the process is stopped.
pub async fn run(cfg: RunConfig) -> Result<(), RunError> {
    let fleet = Client::try_default().await.map_err(RunError::Client)?;
    let store = Store::default();
    let cell = ConfigCell::default();
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let leader = Arc::new(AtomicBool::new(false));

    let file_members = match &cfg.members_file {
        Some(p) => members::from_file(p)?,
        None => Vec::new(),
    };

    let config_listener = bind(cfg.listen).await?;
    let admin_listener = bind(cfg.admin_listen).await?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let feed = match &cfg.xds {
        Some(x) => Some(start_xds(x, &metrics, stopping.clone()).await?),
        None => None,
    };
    let endpoint = Endpoint {
        cell: cell.clone(),
        token: cfg.token.as_deref().map(Into::into),
        waiting: metrics.handoff_waiting.clone(),
    };
    let admin_state = Admin {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    info!(listen = %cfg.listen, admin = %cfg.admin_listen, "serving");

    let m = metrics.clone();
    let errors = move |kind: &str| m.error(kind);
    tokio::spawn(watch::watch_ingresses(
        fleet.clone(),
        store.clone(),
        errors.clone(),
    ));
    tokio::spawn(watch::watch_classes(
        fleet.clone(),
        store.clone(),
        errors.clone(),
    ));
    tokio::spawn(watch::watch_namespaces(
        fleet.clone(),
        store.clone(),
        errors.clone(),
    ));
    for kind in gateway_api::watch::Kind::ALL {
        let (client, store, errors) = (fleet.clone(), store.clone(), errors.clone());
        tokio::spawn(gateway_api::watch::watch_kind(client, store, kind, errors));
    }
    tokio::spawn(watch::watch_parameters(
        fleet.clone(),
        store.clone(),
        cfg.derive.ingress_class.clone(),
        errors.clone(),
    ));
    tokio::spawn(manage_members(
        fleet.clone(),
        cfg.secrets_namespace.clone(),
        file_members,
        store.clone(),
        metrics.clone(),
    ));
    let elector = Elector::new(
        fleet.clone(),
        &cfg.lease_namespace,
        &cfg.lease_name,
        &cfg.identity,
        LEASE_DURATION,
    );
    let election = tokio::spawn(elect(
        elector,
        leader.clone(),
        metrics.clone(),
        stopping.clone(),
    ));
    let publisher = Publisher::new(
        cfg.derive.clone(),
        cfg.grace,
        store,
        cell.clone(),
        metrics.clone(),
        ready,
    )
    .with_xds(feed)
    .with_status_address(cfg.status_address.clone());
    tokio::spawn(derive_loop(fleet.clone(), cfg.clone(), publisher, leader));

    let router = serve::wasm_route(handoff::router(endpoint), cfg.xds.as_ref());
    let config_srv = axum::serve(config_listener, router)
        .with_graceful_shutdown(stopped(stopping.clone()))
        .into_future();
    let admin_srv = axum::serve(admin_listener, admin::router(admin_state))
        .with_graceful_shutdown(stopped(stopping))
        .into_future();
    let servers = tokio::spawn(async move {
        let (c, a) = tokio::join!(config_srv, admin_srv);
        for r in [c, a] {
            if let Err(e) = r {
                error!(err = %e, "server stopped");
            }
        }
    });
    shutdown_signal().await;
    // Hand over: no more leading (the Lease is released for a follower to take at once),
    // parked long polls answered so gateways re-poll another replica, servers drained.
    info!("stopping: releasing the Lease, draining the config endpoint, ending xDS streams");
    cell.drain();
    stop.send_replace(true);
    let drained = async {
        let _ = election.await;
        let _ = servers.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish in time");
    }
    Ok(())
}

/// Lease duration; a leader renews at a third of it, followers retry every second.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long shutdown may take (Kubernetes' default grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => info!("interrupted"),
        },
        Err(e) => {
            warn!(err = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves once `stopping` turns true.
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    let listener = tokio::net::TcpListener::bind(addr).await;
    listener.map_err(|source| RunError::Listen { addr, source })
}

/// Bind the ADS server and start it and the snapshot builder; returns where derivations go.
async fn start_xds(
    x: &XdsServe,
    metrics: &Metrics,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<Feed, RunError> {
    let listener = bind(x.listen).await?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    let server =
        xds::AdsServer::new(rx, x.auth.clone(), metrics.xds.clone()).with_shutdown(stopping);
    tokio::spawn(async move {
        if let Err(e) = server.serve(listener).await {
            error!(err = %e, "xDS server stopped");
        }
    });
    info!(listen = %x.listen, "serving xDS");
    Ok(feed::spawn(x.options.clone(), tx, metrics.xds.clone()))
}

/// Keep one EndpointSlice watch per member: members from the file plus Argo CD cluster Secrets.
async fn manage_members(
    fleet: Client,
    secrets_ns: Option<String>,
    file_members: Vec<MemberSpec>,
    store: Store,
    metrics: Metrics,
) {
    let mut running: BTreeMap<String, (MemberSpec, JoinHandle<()>)> = BTreeMap::new();
    let mut secret_members: BTreeMap<String, MemberSpec> = BTreeMap::new();
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    let (rejections, rejected) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    if let Some(ns) = &secrets_ns {
        tokio::spawn(secret_events(
            fleet.clone(),
            ns.clone(),
            rejected,
            metrics.clone(),
        ));
    }
    let mut reconcile = |secret_members: &BTreeMap<String, MemberSpec>| {
        // The members file wins over a Secret of the same id; Secrets in name order.
        let candidates = file_members
            .iter()
            .map(|m| ("the members file".to_string(), m.clone()))
            .chain(secret_members.iter().map(|(k, m)| (k.clone(), m.clone())))
            .collect();
        let (kept, dropped) = members::dedup(candidates);
        for d in dropped {
            if reported.insert(d.clone()) {
                warn!("{}: {}", d.0, d.1);
                metrics.error("member_rejected");
                let _ = rejections.send(d);
            }
        }
        let desired: BTreeMap<String, MemberSpec> =
            kept.into_iter().map(|m| (m.id.clone(), m)).collect();
        running.retain(|id, (spec, task)| {
            let keep = desired.get(id) == Some(spec);
            if !keep {
                task.abort();
                if !desired.contains_key(id) {
                    info!(member = %id, "member removed");
                    store.remove_member(id);
                }
            }
            keep
        });
        for (id, spec) in desired {
            if running.contains_key(&id) {
                continue;
            }
            store.upsert_member(&id, spec.zone.clone(), spec.gateway);
            let (store, metrics, s) = (store.clone(), metrics.clone(), spec.clone());
            let task = tokio::spawn(async move {
                match members::client(&s).await {
                    Ok(c) => {
                        info!(member = %s.id, "watching member Services and EndpointSlices");
                        let m = metrics.clone();
                        watch::watch_member(s.id.clone(), c, store, move |k| m.error(k)).await
                    }
                    Err(e) => {
                        // The member stays `unknown` (never synced); fix its Secret to retry.
                        error!(member = %s.id, err = %e, "cannot build member client");
                        metrics.error("member_client");
                    }
                }
            });
            running.insert(id, (spec, task));
        }
    };
    reconcile(&secret_members);

    let Some(ns) = secrets_ns else { return };
    let api: Api<Secret> = Api::namespaced(fleet, &ns);
    let cfg =
        watcher::Config::default().labels(&format!("{}=cluster", members::ARGOCD_SECRET_TYPE));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut relist: BTreeMap<String, MemberSpec> = BTreeMap::new();
    // A Secret that names no usable member is skipped (logged, counted); the others go on.
    let to_member = |s: &Secret| match members::from_argo_secret(s) {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(err = %e, "ignoring cluster Secret");
            metrics.error("member_rejected");
            let name = s.metadata.name.clone().unwrap_or_default();
            let _ = rejections.send((name, e.to_string()));
            None
        }
    };
    let secret_key = |s: &Secret| s.metadata.name.clone().unwrap_or_default();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(s)) => {
                if let Some(m) = to_member(&s) {
                    relist.insert(secret_key(&s), m);
                }
            }
            Ok(Event::InitDone) => {
                secret_members = std::mem::take(&mut relist);
                reconcile(&secret_members);
            }
            Ok(Event::Apply(s)) => {
                match to_member(&s) {
                    Some(m) => secret_members.insert(secret_key(&s), m),
                    None => secret_members.remove(&secret_key(&s)),
                };
                reconcile(&secret_members);
            }
            Ok(Event::Delete(s)) => {
                secret_members.remove(&secret_key(&s));
                reconcile(&secret_members);
            }
            Err(e) => {
                warn!(err = %e, "cluster Secret watch failed; retrying");
                metrics.error("secret_watch");
            }
        }
    }
}

/// One Warning Event (`MemberRejected`) on each cluster Secret whose member is skipped.
async fn secret_events(
    fleet: Client,
    ns: String,
    mut rejected: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    metrics: Metrics,
) {
    let recorder = Recorder::new(
        fleet,
        Reporter {
            controller: "fleetgate-controller".to_string(),
            instance: None,
        },
    );
    while let Some((secret, why)) = rejected.recv().await {
        let object = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Secret".to_string()),
            namespace: Some(ns.clone()),
            name: Some(secret),
            ..ObjectReference::default()
        };
        let ev = KEvent {
            type_: EventType::Warning,
            reason: "MemberRejected".to_string(),
            note: Some(why.chars().take(1000).collect()),
            action: "Discover".to_string(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &object).await {
            warn!(err = %e, "cannot record Event");
            metrics.error("event");
        }
    }
}

/// Renew or acquire the Lease every third of its duration.
/// Until `stopping`: then stop leading and release the Lease.
async fn elect(
    e: Elector,
    leader: Arc<AtomicBool>,
    metrics: Metrics,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let is = match e.try_acquire_or_renew().await {
            Ok(is) => is,
            Err(err) => {
                warn!(err = %err, "leader election failed");
                metrics.error("leader_election");
                false
            }
        };
        if is != leader.swap(is, Ordering::Relaxed) {
            info!(leader = is, "leadership changed");
        }
        metrics.leader.set(i64::from(is));
        tokio::select! {
            _ = tokio::time::sleep(e.retry_period(is)) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    leader.store(false, Ordering::Relaxed);
    metrics.leader.set(0);
    match e.release().await {
        Ok(true) => info!("Lease released"),
        Ok(false) => {}
        Err(err) => {
            warn!(err = %err, "cannot release the Lease; a follower takes over when it expires")
        }
    }
}

/// Per Ingress: the member clusters its routes use that the data plane will not send new
/// traffic to, by the plugin's own rule ([`failover::controller_allows`]), with why.
/// An Ingress or an HTTPRoute, for Events.
type Source = (OriginKind, IngressKey);

fn unavailable_by_ingress(d: &Derived) -> BTreeMap<Source, BTreeSet<(String, String)>> {
    let mut out: BTreeMap<Source, BTreeSet<(String, String)>> = BTreeMap::new();
    let c = match d.plugin() {
        Ok(c) => c,
        Err(e) => {
            error!(err = %e, "the plugin rejects the derived config (a bug); no failover Events");
            return out;
        }
    };
    for (r, o) in c.routes.iter().zip(d.origins()) {
        let entry = out.entry((o.kind, o.base.clone())).or_default();
        for b in r.base.backends.iter() {
            if failover::controller_allows(&c, r, b) {
                continue;
            }
            let Some(cluster) = c.clusters.get(b.cluster) else {
                continue;
            };
            let why = match (cluster.state, c.ready(b)) {
                (ClusterState::Down, _) => "down".to_string(),
                (_, Some(n)) => format!("{n} ready endpoints (min-healthy {})", r.min_healthy),
                (state, None) => format!("{state:?}").to_lowercase(),
            };
            entry.insert((cluster.id.clone(), why));
        }
    }
    out
}

fn ingress_ref(k: &IngressKey) -> ObjectReference {
    object_ref(&(OriginKind::Ingress, k.clone()))
}

fn object_ref((kind, k): &Source) -> ObjectReference {
    let (api_version, kind) = match kind {
        OriginKind::Ingress => ("networking.k8s.io/v1", "Ingress"),
        OriginKind::HttpRoute => ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    };
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace: Some(k.namespace.clone()),
        name: Some(k.name.clone()),
        ..ObjectReference::default()
    }
}

/// The derive half of the loop: snapshot, derive, publish, readiness; no API writes, so it is
/// testable on a store alone.
pub struct Publisher {
    pub derive: DeriveOptions,
    pub grace: Duration,
    pub store: Store,
    pub cell: ConfigCell,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    deriver: Deriver,
    started: tokio::time::Instant,
    /// The last IngressClass parameters warning (logged once while it stands).
    class_warning: Option<String>,
    /// Where derivations go to become xDS snapshots.
    xds: Option<Feed>,
    /// `--status-address`: the Gateways' address in their status.
    status_address: Option<String>,
}

/// One published derivation.
pub struct Step {
    pub derived: Derived,
    pub changed: bool,
    pub snapshot: Snapshot,
}

impl Publisher {
    pub fn new(
        derive: DeriveOptions,
        grace: Duration,
        store: Store,
        cell: ConfigCell,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
    ) -> Self {
        Publisher {
            derive,
            grace,
            store,
            cell,
            metrics,
            ready,
            deriver: Deriver::default(),
            started: tokio::time::Instant::now(),
            class_warning: None,
            xds: None,
            status_address: None,
        }
    }

    /// The address Gateways are reachable at (`--status-address`), for their status.
    pub fn with_status_address(mut self, address: Option<String>) -> Self {
        self.status_address = address;
        self
    }

    /// Offer every published derivation to the xDS snapshot builder too.
    pub fn with_xds(mut self, feed: Option<Feed>) -> Self {
        self.xds = feed;
        self
    }

    /// When a derivation is due without any event: the end of the start-up wait for members,
    /// or a member's grace period.
    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let startup = (self.cell.current().is_none() && !self.store.synced())
            .then_some(self.started + self.grace)
            .filter(|t| *t > now);
        let lost = self.store.next_deadline(now, self.grace);
        startup.into_iter().chain(lost).min()
    }

    /// Derive and publish once. Nothing is published before the fleet is listed; members that
    /// have not listed yet are waited for at most the grace period, then count as `unknown`
    /// (an unreachable member must not hold the gateway's config hostage). Ready once a config
    /// is published.
    pub fn step(&mut self) -> Option<Step> {
        let now = tokio::time::Instant::now();
        let snap = self.store.snapshot(now, self.grace);
        let waited = now.saturating_duration_since(self.started) >= self.grace;
        // A config without the HTTPRoutes (not listed yet) would drop their routes.
        let listed = self.store.synced() && snap.gateway_api_listed;
        if !snap.fleet_synced || !(listed || waited) {
            return None;
        }
        let (opts, warning) = cli::class_options(&self.derive, &snap.classes, &snap.config_maps);
        if warning != self.class_warning {
            if let Some(w) = &warning {
                warn!("{w}");
                self.metrics.error("parameters");
            }
            self.class_warning = warning;
        }
        let started = std::time::Instant::now();
        let gateway = gateway_api::apply::inputs(&snap, self.status_address.as_deref());
        let result =
            (self.deriver).derive_with(&snap.ingresses, Some(gateway), &snap.members, &opts);
        self.metrics.observe_derive(started.elapsed());
        let derived = match result {
            Ok(d) => d,
            Err(e @ (DeriveError::NoRoutes(_) | DeriveError::NoMembers)) => {
                // Keep serving the last config: an empty one would drop every route.
                warn!(err = %e, "nothing to derive; keeping the last config");
                return None;
            }
            Err(e) => {
                error!(err = %e, "derive failed; keeping the last config");
                self.metrics.error("derive");
                return None;
            }
        };
        if derived.json.len() > pcfg::MAX_CONFIG_BYTES {
            error!(
                bytes = derived.json.len(),
                limit = pcfg::MAX_CONFIG_BYTES,
                "the config is larger than the plugin reads; keeping the last config"
            );
            self.metrics.error("config_too_large");
            return None;
        }
        let changed = self.cell.publish_derived(&derived);
        self.metrics.observe_published(&derived, changed);
        self.ready.store(true, Ordering::Relaxed);
        if let Some(feed) = &self.xds {
            feed.offer(derived.clone(), snap.members.clone());
        }
        if changed {
            info!(revision = %derived.revision, routes = derived.route_count(), problems = derived.problems.len(), "config published");
        }
        Some(Step {
            derived,
            changed,
            snapshot: snap,
        })
    }
}

/// How long a burst of watch events may gather before one derivation.
const DEBOUNCE: Duration = Duration::from_millis(50);

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Derive on every change (debounced), and when a member's grace period ends.
async fn derive_loop(
    fleet: Client,
    cfg: RunConfig,
    mut publisher: Publisher,
    leader: Arc<AtomicBool>,
) {
    let recorder = Recorder::new(
        fleet.clone(),
        Reporter {
            controller: "fleetgate-controller".to_string(),
            instance: Some(cfg.identity.clone()),
        },
    );
    let (store, metrics) = (publisher.store.clone(), publisher.metrics.clone());
    let mut reported: BTreeSet<(IngressKey, String)> = BTreeSet::new();
    let mut prev_unavailable: BTreeMap<Source, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut last_revision = String::new();
    let mut was_leader = false;
    let mut higress = cfg
        .higress
        .clone()
        .map(crate::higress::apply::Publisher::new);
    loop {
        // Derive only when something changed (debounced) or a member's grace period ends.
        let deadline = publisher.next_deadline();
        tokio::select! {
            _ = store.changed() => tokio::time::sleep(DEBOUNCE).await,
            _ = sleep_until(deadline) => {}
        }
        let Some(Step {
            derived,
            changed,
            snapshot: snap,
        }) = publisher.step()
        else {
            continue;
        };
        if changed {
            if let Some(out) = &cfg.out {
                let mut pretty = serde_json::to_string_pretty(derived.config()).unwrap_or_default();
                pretty.push('\n');
                if let Err(e) = handoff::write_atomic(out, pretty.as_bytes()).await {
                    error!(err = %e, "config file write failed");
                    metrics.error("handoff_file");
                }
            }
        }

        let is_leader = leader.load(Ordering::Relaxed);
        if !is_leader {
            was_leader = false;
            continue;
        }
        let became_leader = !was_leader;
        was_leader = true;

        // WasmPlugin (leader only).
        if let Some((ns, name)) = &cfg.wasmplugin {
            if changed || became_leader || last_revision != derived.revision {
                match handoff::apply_wasmplugin(fleet.clone(), ns, name, derived.config()).await {
                    Ok(()) => last_revision = derived.revision.clone(),
                    Err(e) => {
                        error!(err = %e, "WasmPlugin apply failed");
                        metrics.error("handoff_wasmplugin");
                    }
                }
            }
        }

        // Higress wiring (leader only): written when the generated objects change.
        if let Some(h) = higress.as_mut() {
            let step = h.step(fleet.clone(), &derived, &snap.members, became_leader);
            if let Err(e) = step.await {
                error!(err = %e, "Higress wiring apply failed");
                metrics.error("higress_apply");
            }
        }

        // Events for problems, once per (Ingress, message).
        for p in &derived.problems {
            let key = (p.ingress.clone(), p.message.clone());
            if reported.contains(&key) {
                continue;
            }
            warn!(ingress = %p.ingress, severity = ?p.severity, "{}", p.message);
            let ev = KEvent {
                type_: EventType::Warning,
                reason: match p.severity {
                    Severity::Rejected => "IngressRejected".to_string(),
                    Severity::Stale => "InvalidEditKeptLastGood".to_string(),
                    Severity::Warning => "IngressWarning".to_string(),
                },
                note: Some(p.message.chars().take(1000).collect()),
                action: "Derive".to_string(),
                secondary: None,
            };
            match recorder.publish(&ev, &ingress_ref(&p.ingress)).await {
                Ok(()) => {
                    reported.insert(key);
                }
                Err(e) => {
                    warn!(err = %e, "cannot record Event");
                    metrics.error("event");
                }
            }
        }
        reported.retain(|(k, m)| {
            derived
                .problems
                .iter()
                .any(|p| p.ingress == *k && p.message == *m)
        });

        // Failover Events: a cluster an Ingress uses became unusable, or came back.
        let unavailable = unavailable_by_ingress(&derived);
        for (ing, now) in &unavailable {
            let before = prev_unavailable.get(ing).cloned().unwrap_or_default();
            let newly: Vec<String> = now
                .difference(&before)
                .map(|(c, why)| format!("{c} is {why}"))
                .collect();
            let back: Vec<&str> = before
                .iter()
                .filter(|(c, _)| !now.iter().any(|(n, _)| n == c))
                .map(|(c, _)| c.as_str())
                .collect();
            for (reason, note, type_) in [
                ("FailedOver", newly.join("; "), EventType::Warning),
                ("ClusterRecovered", back.join(", "), EventType::Normal),
            ] {
                if note.is_empty() || became_leader && reason == "ClusterRecovered" {
                    continue;
                }
                let ev = KEvent {
                    type_,
                    reason: reason.to_string(),
                    note: Some(format!("{note}; traffic follows the remaining clusters")),
                    action: "Route".to_string(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &object_ref(ing)).await {
                    warn!(err = %e, "cannot record Event");
                    metrics.error("event");
                }
            }
        }
        prev_unavailable = unavailable;

        // Ingress status, where it is not already what we want.
        if let Some(addr) = &cfg.status_address {
            let current: BTreeMap<IngressKey, Option<String>> = snap
                .ingresses
                .iter()
                .map(|i| {
                    let key = IngressKey {
                        namespace: i.metadata.namespace.clone().unwrap_or_default(),
                        name: i.metadata.name.clone().unwrap_or_default(),
                    };
                    let lb = i
                        .status
                        .as_ref()
                        .and_then(|s| s.load_balancer.as_ref())
                        .and_then(|lb| lb.ingress.as_ref())
                        .and_then(|v| v.first())
                        .and_then(|e| e.ip.clone().or_else(|| e.hostname.clone()));
                    (key, lb)
                })
                .collect();
            for o in derived.origins().filter(|o| o.kind == OriginKind::Ingress) {
                for k in std::iter::once(&o.base).chain(&o.canaries) {
                    if current.get(k).and_then(|c| c.as_deref()) == Some(addr.as_str()) {
                        continue;
                    }
                    match set_status(&fleet, k, addr).await {
                        Ok(()) => {}
                        Err(e) => {
                            warn!(ingress = %k, err = %e, "cannot set Ingress status");
                            metrics.error("ingress_status");
                        }
                    }
                }
            }
        }

        // Gateway API status, where it is not already what the evaluation says.
        if let (true, Some(outcome)) = (snap.gateway_api_listed, &derived.gateway_api) {
            let (objects, now) = (&snap.gateway_api, gateway_api::apply::now());
            gateway_api::apply::write_status(&fleet, outcome, objects, &now, &metrics).await;
        }
    }
}

/// `status.loadBalancer.ingress = [{ip}]` or `[{hostname}]`.
async fn set_status(fleet: &Client, k: &IngressKey, addr: &str) -> Result<(), kube::Error> {
    let api: Api<Ingress> = Api::namespaced(fleet.clone(), &k.namespace);
    let entry = if addr.parse::<std::net::IpAddr>().is_ok() {
        serde_json::json!({"ip": addr})
    } else {
        serde_json::json!({"hostname": addr})
    };
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [entry]}}});
    api.patch_status(&k.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use http::{Method, Request, Response};
    use kube::client::Body;

    use super::*;
    use crate::cli::{self, RenderArgs};
    use crate::endpoints::Relist;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
    }

    fn render(scenario: &str, hz_b: &str) -> Derived {
        let f = fixtures();
        cli::render(&RenderArgs {
            fleet: vec![f.join("clusters"), f.join(scenario)],
            members: vec![
                ("hz-a".into(), f.join("members/hz-a")),
                ("hz-b".into(), f.join("members").join(hz_b)),
            ],
            zones: vec![],
            options: DeriveOptions::default(),
        })
        .expect("fixtures render")
    }

    #[test]
    fn a_cluster_scaled_to_zero_is_reported_for_the_failover_event() {
        let healthy = unavailable_by_ingress(&render("active-active", "hz-b"));
        assert!(healthy.values().all(BTreeSet::is_empty), "{healthy:?}");
        let d = render("active-active-zero-replicas", "hz-b-scaled-to-zero");
        let gone: Vec<(String, String)> =
            unavailable_by_ingress(&d).into_values().flatten().collect();
        // Every Service it serves has zero ready endpoints there: the cluster is `down`.
        assert_eq!(gone, vec![("hz-b".to_string(), "down".to_string())]);
    }

    /// A listed store with the `active-active` Ingress and member hz-a.
    fn hz_a_store() -> Store {
        let f = fixtures();
        let dump = cli::load_dir(&f.join("active-active")).unwrap();
        let members = cli::load_dir(&f.join("members/hz-a")).unwrap();
        let store = Store::default();
        store.upsert_member("hz-a", None, None);
        store.replace_services("hz-a", Relist::of_services(&members.services));
        store.replace_slices("hz-a", Relist::of_slices(&members.endpoint_slices));
        store.replace_ingresses(dump.ingresses);
        store.no_gateway_api();
        store
    }

    fn publisher(store: &Store, grace: Duration, metrics: &Metrics) -> Publisher {
        let cell = ConfigCell::default();
        let ready = Arc::new(AtomicBool::new(false));
        let opts = DeriveOptions::default();
        Publisher::new(opts, grace, store.clone(), cell, metrics.clone(), ready)
    }

    #[tokio::test(start_paused = true)]
    async fn no_derive_is_due_while_nothing_changes_except_a_grace_period_ending() {
        let grace = Duration::from_secs(30);
        let store = hz_a_store();
        let metrics = Metrics::default();
        let mut p = publisher(&store, grace, &metrics);
        assert!(p.step().expect("published").changed);
        assert_eq!(
            p.next_deadline(),
            None,
            "nothing due: the loop waits for events"
        );
        let t = tokio::time::Instant::now();
        store.member_failed("hz-a", t);
        assert_eq!(p.next_deadline(), Some(t + grace));
        tokio::time::advance(grace).await;
        let step = p.step().expect("derived at the deadline");
        assert_eq!(
            step.derived.config().clusters[0].state,
            ClusterState::Unknown
        );
        assert_eq!(p.next_deadline(), None);
    }

    #[tokio::test]
    async fn each_derivation_reaches_xds_and_a_pod_replaced_only_changes_endpoints() {
        let (store, metrics) = (hz_a_store(), Metrics::default());
        let (tx, mut rx) = tokio::sync::watch::channel(None);
        let wasm = xds::WasmCode::File("/plugin.wasm".into());
        let opts = xds::XdsOptions::new(&DeriveOptions::default(), ([0, 0, 0, 0], 80).into(), wasm);
        let feed = feed::spawn(opts, tx, metrics.xds.clone());
        let mut p = publisher(&store, Duration::ZERO, &metrics).with_xds(Some(feed));
        p.step().expect("published");
        let wait = Duration::from_secs(10);
        let first = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        let first = first.unwrap().unwrap().clone().unwrap();
        let cds = first.get(xds::CLUSTER).unwrap();
        let shop = "outbound|80|hz-a|shop.default.svc.cluster.local";
        assert!(cds.entries.iter().any(|e| &*e.name == shop));

        let dump = cli::load_dir(&fixtures().join("members/hz-a")).unwrap();
        let mut slice = dump.endpoint_slices[0].clone();
        slice.endpoints[0].addresses = vec!["10.1.9.99".into()];
        store.apply_slice("hz-a", slice);
        p.step().expect("derived again");
        let next = tokio::time::timeout(wait, rx.wait_for(|s| s.as_ref() != Some(&first))).await;
        let next = next.unwrap().unwrap().clone().unwrap();
        let version = |s: &xds::Snapshot, t| s.get(t).unwrap().version.clone();
        assert_ne!(
            version(&next, xds::ENDPOINT),
            version(&first, xds::ENDPOINT)
        );
        for t in [xds::CLUSTER, xds::LISTENER, xds::ROUTE, xds::EXTENSION] {
            assert_eq!(version(&next, t), version(&first, t), "{t}");
        }
        let text = metrics.render();
        assert!(
            text.contains("fleetgate_xds_snapshot_build_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fleetgate_xds_endpoint_update_seconds_count 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn ingress_status_is_merge_patched_with_the_address() {
        let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let server = tokio::spawn(async move {
            for want in [
                serde_json::json!({"ip": "203.0.113.7"}),
                serde_json::json!({"hostname": "gw.example.com"}),
            ] {
                let (req, send) = api.next_request().await.unwrap();
                assert_eq!(req.method(), Method::PATCH);
                assert_eq!(
                    req.uri().path(),
                    "/apis/networking.k8s.io/v1/namespaces/default/ingresses/shop/status"
                );
                assert_eq!(
                    req.headers()["content-type"],
                    "application/merge-patch+json"
                );
                let bytes = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(body["status"]["loadBalancer"]["ingress"][0], want);
                let ing = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "shop", "namespace": "default"}});
                send.send_response(Response::new(Body::from(serde_json::to_vec(&ing).unwrap())));
            }
        });
        let key = IngressKey {
            namespace: "default".into(),
            name: "shop".into(),
        };
        set_status(&client, &key, "203.0.113.7").await.unwrap();
        set_status(&client, &key, "gw.example.com").await.unwrap();
        server.await.unwrap();
    }

    /// The mock API's answer: `body` with a resourceVersion, as JSON.
    fn lease_answer(mut body: serde_json::Value) -> Response<Body> {
        body["metadata"]["resourceVersion"] = serde_json::json!("1");
        Response::new(Body::from(serde_json::to_vec(&body).unwrap()))
    }

    async fn json_body(req: Request<Body>) -> serde_json::Value {
        let bytes = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_stopped_election_stops_leading_and_releases_the_lease() {
        let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let elector = Elector::new(
            Client::new(svc, "default"),
            "fleetgate-system",
            "fleetgate",
            "me",
            LEASE_DURATION,
        );
        let leader = Arc::new(AtomicBool::new(false));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(elect(elector, leader.clone(), Metrics::default(), stopping));
        // Acquire: no Lease yet, so it is created.
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::GET);
        send.send_response(Response::builder().status(404).body(Body::from(
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_vec(),
        )).unwrap());
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::POST);
        let created = json_body(req).await;
        send.send_response(lease_answer(created.clone()));
        while !leader.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
        stop.send_replace(true);
        // Release: read the Lease, write it back with no holder.
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::GET);
        send.send_response(lease_answer(created));
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), Method::PUT);
        let released = json_body(req).await;
        assert!(released["spec"]["holderIdentity"].is_null(), "{released}");
        send.send_response(lease_answer(released));
        task.await.unwrap();
        assert!(!leader.load(Ordering::Relaxed), "no longer leading");
    }
}
