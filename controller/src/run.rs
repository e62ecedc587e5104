//! The `run` command: watches, member clients, the derive loop, hand-off, leader election,
//! Ingress status and Events. Both replicas watch, derive and serve the config endpoint; only
//! the Lease holder writes Ingress status, Events and the WasmPlugin.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_plugin::config::{ClusterState, ConfigV1};
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
use crate::derive::{self, DeriveError, DeriveOptions, Derived, IngressKey, Severity};
use crate::handoff::{self, ConfigCell, Endpoint, Published};
use crate::leader::Elector;
use crate::members::{self, MemberSpec};
use crate::store::Store;
use crate::watch;

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
    /// `status.loadBalancer.ingress[0]` (IP or hostname) for our Ingresses.
    pub status_address: Option<String>,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
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

    let config_listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: cfg.admin_listen,
            source,
        })?;
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
    tokio::spawn(manage_members(
        fleet.clone(),
        cfg.secrets_namespace.clone(),
        file_members,
        store.clone(),
        metrics.clone(),
    ));
    tokio::spawn(elect(
        fleet.clone(),
        cfg.clone(),
        leader.clone(),
        metrics.clone(),
    ));
    tokio::spawn(derive_loop(
        fleet.clone(),
        cfg.clone(),
        store,
        cell,
        metrics,
        ready,
        leader,
    ));

    let config_srv = axum::serve(config_listener, handoff::router(endpoint));
    let admin_srv = axum::serve(admin_listener, admin::router(admin_state));
    tokio::select! {
        r = config_srv => if let Err(e) = r { error!(err = %e, "config server stopped") },
        r = admin_srv => if let Err(e) = r { error!(err = %e, "admin server stopped") },
        _ = tokio::signal::ctrl_c() => info!("interrupted"),
    }
    Ok(())
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
    let mut reconcile = |secret_members: &BTreeMap<String, MemberSpec>| {
        let mut desired: BTreeMap<String, MemberSpec> = secret_members
            .values()
            .map(|m| (m.id.clone(), m.clone()))
            .collect();
        // The members file wins over a Secret of the same name.
        for m in &file_members {
            desired.insert(m.id.clone(), m.clone());
        }
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
            store.upsert_member(&id, spec.zone.clone());
            let (store, metrics, s) = (store.clone(), metrics.clone(), spec.clone());
            let task = tokio::spawn(async move {
                match members::client(&s).await {
                    Ok(c) => {
                        info!(member = %s.id, "watching member EndpointSlices");
                        let m = metrics.clone();
                        watch::watch_member_slices(s.id.clone(), c, store, move |k| m.error(k))
                            .await
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
    let to_member = |s: &Secret| match members::from_argo_secret(s) {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(err = %e, "ignoring cluster Secret");
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

/// Renew or acquire the Lease every third of its duration.
async fn elect(fleet: Client, cfg: RunConfig, leader: Arc<AtomicBool>, metrics: Metrics) {
    let duration = Duration::from_secs(15);
    let e = Elector::new(
        fleet,
        &cfg.lease_namespace,
        &cfg.lease_name,
        &cfg.identity,
        duration,
    );
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
            info!(identity = %cfg.identity, leader = is, "leadership changed");
        }
        metrics.leader.set(i64::from(is));
        tokio::time::sleep(duration / 3).await;
    }
}

/// Per Ingress: the member clusters its routes use that are not usable now (down or unknown,
/// or fewer ready endpoints than min-healthy).
fn unavailable_by_ingress(d: &Derived) -> BTreeMap<IngressKey, BTreeSet<(String, String)>> {
    let c: &ConfigV1 = &d.config;
    let state = |id: &str| c.clusters.iter().find(|m| m.id == id).map(|m| m.state);
    let mut out: BTreeMap<IngressKey, BTreeSet<(String, String)>> = BTreeMap::new();
    for (r, o) in c.routes.iter().zip(&d.origins) {
        let entry = out.entry(o.base.clone()).or_default();
        for b in &r.backends {
            let why = match state(&b.cluster) {
                Some(ClusterState::Down) => Some("down".to_string()),
                Some(ClusterState::Unknown) => {
                    Some("unknown (control plane unreachable)".to_string())
                }
                _ if b.ready.is_some_and(|n| n < r.min_healthy) => {
                    Some(format!("{} ready endpoints", b.ready.unwrap_or(0)))
                }
                _ => None,
            };
            if let Some(why) = why {
                entry.insert((b.cluster.clone(), why));
            }
        }
    }
    out
}

fn ingress_ref(k: &IngressKey) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".to_string()),
        kind: Some("Ingress".to_string()),
        namespace: Some(k.namespace.clone()),
        name: Some(k.name.clone()),
        ..ObjectReference::default()
    }
}

/// Derive on every change (debounced) and once a second (grace periods end without events).
#[allow(clippy::too_many_arguments)]
async fn derive_loop(
    fleet: Client,
    cfg: RunConfig,
    store: Store,
    cell: ConfigCell,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    leader: Arc<AtomicBool>,
) {
    let recorder = Recorder::new(
        fleet.clone(),
        Reporter {
            controller: "fleetgate-controller".to_string(),
            instance: Some(cfg.identity.clone()),
        },
    );
    let mut reported: BTreeSet<(IngressKey, String)> = BTreeSet::new();
    let mut prev_unavailable: BTreeMap<IngressKey, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut last_revision = String::new();
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = store.changed() => tokio::time::sleep(Duration::from_millis(100)).await,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let snap = store.snapshot(tokio::time::Instant::now(), cfg.grace);
        if !snap.fleet_synced {
            continue;
        }
        let mut opts = cfg.derive.clone();
        opts.class_is_default = snap.classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(opts.ingress_class.as_str())
                && watch::is_default_class(c)
        });
        let derived = match derive::derive_config(&snap.ingresses, &snap.members, &opts) {
            Ok(d) => d,
            Err(e @ (DeriveError::NoRoutes(_) | DeriveError::NoMembers)) => {
                // Keep serving the last config: an empty one would drop every route.
                warn!(err = %e, "nothing to derive; keeping the last config");
                ready.store(store.synced(), Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                error!(err = %e, "derive failed; keeping the last config");
                metrics.error("derive");
                continue;
            }
        };
        ready.store(store.synced(), Ordering::Relaxed);
        metrics.observe_config(&derived.config);
        for sev in [Severity::Warning, Severity::Rejected] {
            let n = derived
                .problems
                .iter()
                .filter(|p| p.severity == sev)
                .count();
            let name = if sev == Severity::Warning {
                "warning"
            } else {
                "rejected"
            };
            metrics
                .ingress_problems
                .get_or_create(&vec![("severity".to_string(), name.to_string())])
                .set(n as i64);
        }

        let changed = cell.publish(Published {
            revision: derived.revision.clone(),
            json: derived.json.clone(),
        });
        if changed {
            metrics.config_generation.inc();
            info!(revision = %derived.revision, routes = derived.config.routes.len(), problems = derived.problems.len(), "config published");
            if let Some(out) = &cfg.out {
                let mut pretty = serde_json::to_string_pretty(&derived.config).unwrap_or_default();
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
                match handoff::apply_wasmplugin(fleet.clone(), ns, name, &derived.config).await {
                    Ok(()) => last_revision = derived.revision.clone(),
                    Err(e) => {
                        error!(err = %e, "WasmPlugin apply failed");
                        metrics.error("handoff_wasmplugin");
                    }
                }
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
                    Severity::Rejected => "AnnotationRejected".to_string(),
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
                if let Err(e) = recorder.publish(&ev, &ingress_ref(ing)).await {
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
            for o in &derived.origins {
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
}
