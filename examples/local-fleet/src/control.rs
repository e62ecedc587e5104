//! The control plane of the local fleet: the `fleetgate-controller` library's pure derive over
//! the `examples/fleet` Ingress fixtures and member EndpointSlices that this crate synthesizes
//! from the members' real loopback replicas (ready or not), published both as xDS (the
//! controller's ADS server: clusters, endpoints, listener, routes, the plugin by ECDS) and on
//! the controller's real long-poll endpoint (`GET /v1/config`), on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, Context as _};
use fleetgate_controller::cli::{self, Dump};
use fleetgate_controller::derive::{self, Contact, DeriveOptions, Derived, MemberSnapshot};
use fleetgate_controller::endpoints::MemberIndex;
use fleetgate_controller::handoff::{self, ConfigCell, Published};
use fleetgate_controller::xds::{self, Resources, Snapshot, WasmCode, XdsMetrics, XdsOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use xds::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};

/// The Envoy cluster name of the controller's long-poll endpoint (the plugin's
/// `config_source.upstream` when it pulls).
pub const CONTROLLER_UPSTREAM: &str = "fleetgate-controller";

/// The decision header the derived config asks the plugin to add.
pub const DECISION_HEADER: &str = "x-fleetgate-decision";

/// Directory of the fleet fixtures (`examples/fleet`).
pub fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fleet"))
}

/// A member's replicas as its EndpointSlices list them: addresses, the first `ready` ready;
/// and whether the controller's watch of the member's API server is live.
#[derive(Debug, Clone)]
struct Replicas {
    addrs: Vec<SocketAddr>,
    ready: u32,
    contact: Contact,
}

/// How the plugin gets its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginConfigPath {
    /// The derived config itself, by ECDS.
    Ecds,
    /// By ECDS a bootstrap config whose `config_source` pulls the derived one from the
    /// long-poll endpoint (as Higress/MSE run it), through cluster [`CONTROLLER_UPSTREAM`].
    LongPoll { poll_ms: u32 },
}

/// The fleet's control plane: Ingresses, member replicas, the served config and xDS.
pub struct ControlPlane {
    fleet: Dump,
    options: DeriveOptions,
    members: Mutex<BTreeMap<String, Replicas>>,
    cell: ConfigCell,
    xds: watch::Sender<Option<Arc<Snapshot>>>,
    xds_metrics: XdsMetrics,
    wasm: PathBuf,
    path: PluginConfigPath,
    token: Option<String>,
    poll_addr: Option<SocketAddr>,
    servers: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Loads the Ingresses of `scenario` (a directory under `examples/fleet`, e.g.
    /// `active-active`) for `members` (id -> replica addresses, all ready); the plugin is
    /// the `.wasm` file `wasm`. `failback` = (hold, ramp) seconds, set through the
    /// controller's `fleetgate.io/failback-*` annotations.
    pub fn new(
        scenario: &str,
        members: &[(&str, Vec<SocketAddr>)],
        failback: Option<(u32, u32)>,
        wasm: &Path,
    ) -> anyhow::Result<ControlPlane> {
        let dir = fixtures_dir().join(scenario);
        let mut fleet =
            cli::load_dir(&dir).with_context(|| format!("loading {}", dir.display()))?;
        if let Some((hold, ramp)) = failback {
            let ingresses = fleet
                .ingresses
                .iter_mut()
                .map(|i| &mut i.metadata.annotations);
            let routes =
                (fleet.gateway_api.http_routes.iter_mut()).map(|r| &mut r.metadata.annotations);
            for annotations in ingresses.chain(routes) {
                let annotations = annotations.get_or_insert_with(Default::default);
                annotations.insert(
                    "fleetgate.io/failback-hold-seconds".to_owned(),
                    hold.to_string(),
                );
                annotations.insert(
                    "fleetgate.io/failback-ramp-seconds".to_owned(),
                    ramp.to_string(),
                );
            }
        }
        let mut options = DeriveOptions::default();
        options.settings.decision_header = Some(DECISION_HEADER.to_owned());
        let replicas = |addrs: &Vec<SocketAddr>| Replicas {
            addrs: addrs.clone(),
            ready: u32::try_from(addrs.len()).unwrap_or(u32::MAX),
            contact: Contact::Live,
        };
        let control = ControlPlane {
            fleet,
            options,
            members: Mutex::new(
                members
                    .iter()
                    .map(|(m, a)| ((*m).to_owned(), replicas(a)))
                    .collect(),
            ),
            cell: ConfigCell::default(),
            xds: watch::channel(None).0,
            xds_metrics: XdsMetrics::default(),
            wasm: wasm.to_path_buf(),
            path: PluginConfigPath::Ecds,
            token: None,
            poll_addr: None,
            servers: Vec::new(),
        };
        control.publish()?;
        Ok(control)
    }

    /// Requires `Authorization: Bearer <token>` on the config endpoint (set before `serve`).
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Passive health's first ejection and its ramp back, in seconds (set before `serve`).
    pub fn with_passive_health(mut self, ejection_seconds: u32, ramp_seconds: u32) -> Self {
        let health = &mut self.options.settings.passive_health;
        health.base_ejection_seconds = ejection_seconds;
        health.ramp_seconds = ramp_seconds;
        self
    }

    /// How the plugin gets its config (set before `serve`).
    pub fn with_config_path(mut self, path: PluginConfigPath) -> Self {
        self.path = path;
        self
    }

    /// Serves ADS and the long-poll endpoint on free loopback ports; answers the ADS address.
    pub async fn serve(&mut self) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        self.poll_addr = Some(listener.local_addr()?);
        let router = handoff::router(handoff::Endpoint {
            cell: self.cell.clone(),
            token: self.token.as_deref().map(Arc::from),
            waiting: Default::default(),
        });
        self.servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let ads = listener.local_addr()?;
        let auth = xds::Auth::new(ads, None, false)?;
        let server = xds::AdsServer::new(self.xds.subscribe(), auth, self.xds_metrics.clone());
        self.servers.push(tokio::spawn(async move {
            if let Err(error) = server.serve(listener).await {
                tracing::error!(%error, "ADS server");
            }
        }));
        self.publish()?;
        Ok(ads)
    }

    /// Sets how many of a member's replicas are ready (an EndpointSlice change: the others
    /// leave the slices) and publishes the new config and xDS.
    pub fn set_ready(&self, member: &str, ready: u32) -> anyhow::Result<String> {
        self.change(member, |replicas| replicas.ready = ready)
    }

    /// Sets whether the controller's watch of `member`'s API server is live (`Contact::Lost`:
    /// unreachable past the grace period; its last endpoints stay) and publishes.
    pub fn set_contact(&self, member: &str, contact: Contact) -> anyhow::Result<String> {
        self.change(member, |replicas| replicas.contact = contact)
    }

    fn change(&self, member: &str, edit: impl FnOnce(&mut Replicas)) -> anyhow::Result<String> {
        let mut members = self.lock();
        let replicas = members
            .get_mut(member)
            .ok_or_else(|| anyhow!("no member {member}"))?;
        edit(replicas);
        drop(members);
        self.publish()
    }

    /// The revision currently served.
    pub fn revision(&self) -> Option<String> {
        self.cell.current().map(|p| p.revision.clone())
    }

    /// The config currently served (compact JSON).
    pub fn config_json(&self) -> Option<String> {
        self.cell
            .current()
            .map(|p| String::from_utf8_lossy(&p.json).into_owned())
    }

    /// The ADS server's counters (ACKs, NACKs, streams).
    pub fn xds_metrics(&self) -> &XdsMetrics {
        &self.xds_metrics
    }

    /// Derives the config and the xDS resources from the current state and publishes both;
    /// answers the config's revision.
    pub fn publish(&self) -> anyhow::Result<String> {
        let (derived, resources) = self.build()?;
        let revision = derived.revision.clone();
        self.cell.publish(Published {
            revision: derived.revision,
            json: derived.json,
        });
        self.publish_resources(&resources);
        Ok(revision)
    }

    /// The xDS resources of the current state (to inspect, or change and publish).
    pub fn resources(&self) -> anyhow::Result<Resources> {
        Ok(self.build()?.1)
    }

    /// Publishes `resources` on ADS as they are (tests publish hand-broken ones).
    pub fn publish_resources(&self, resources: &Resources) {
        xds::publish(&self.xds, Snapshot::new(resources));
    }

    fn build(&self) -> anyhow::Result<(Derived, Resources)> {
        let snapshots = self
            .lock()
            .iter()
            .map(|(id, r)| member_snapshot(id, r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let derived = cli::derive_dump(&self.fleet, &snapshots, &self.options)
            .map_err(|error| anyhow!("deriving the config: {error}"))?;
        let listener = SocketAddr::from(([127, 0, 0, 1], 0));
        let code = WasmCode::File(self.wasm.clone());
        let options = XdsOptions::new(&self.options, listener, code.clone());
        let mut resources = xds::build(&derived, &snapshots, &options)
            .map_err(|error| anyhow!("building xDS: {error}"))?;
        if let (PluginConfigPath::LongPoll { poll_ms }, Some(addr)) = (&self.path, self.poll_addr) {
            let ids: Vec<&str> = snapshots.iter().map(|m| m.id.as_str()).collect();
            let boot = bootstrap_config(&ids, *poll_ms, self.token.as_deref());
            resources.extensions = vec![xds::listener::plugin(&boot, &code)];
            resources
                .clusters
                .push(static_cluster(CONTROLLER_UPSTREAM, addr));
        }
        Ok((derived, resources))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Replicas>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A STATIC cluster of one endpoint.
fn static_cluster(name: &str, addr: SocketAddr) -> Cluster {
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(xds::clusters::socket(&addr.ip().to_string(), addr.port())),
            ..Endpoint::default()
        })),
        ..LbEndpoint::default()
    };
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(xds::pb::google::protobuf::Duration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..LocalityLbEndpoints::default()
            }],
            ..ClusterLoadAssignment::default()
        }),
        ..Cluster::default()
    }
}

/// The plugin's bootstrap config when it pulls: no routes, members listed, pull from the
/// controller's long-poll endpoint.
pub fn bootstrap_config(members: &[&str], poll_ms: u32, token: Option<&str>) -> String {
    let clusters: Vec<serde_json::Value> = members
        .iter()
        .map(|m| serde_json::json!({"id": m}))
        .collect();
    let mut source = serde_json::json!({
        "upstream": CONTROLLER_UPSTREAM,
        "poll_ms": poll_ms,
        "wait_seconds": 20,
    });
    if let Some(token) = token {
        source["token"] = serde_json::json!(token);
    }
    serde_json::json!({
        "version": 1,
        "clusters": clusters,
        "routes": [],
        "config_source": source,
    })
    .to_string()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for task in self.servers.drain(..) {
            task.abort();
        }
    }
}

/// A member as the controller's watches would see it: Service `shop` (`http: 80`, `metrics:
/// 9090`) and one EndpointSlice per replica (each
/// listens on its own loopback port; a slice's port is per slice), the first `ready` ready and
/// the others out of the slices (scaled down).
fn member_snapshot(id: &str, replicas: &Replicas) -> anyhow::Result<MemberSnapshot> {
    let ready = usize::try_from(replicas.ready).unwrap_or(usize::MAX);
    let slices = replicas.addrs.iter().enumerate().map(|(i, addr)| {
        let endpoints: Vec<serde_json::Value> = (i < ready)
            .then(|| serde_json::json!({
                "addresses": [addr.ip().to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("shop-{id}-{i}")},
            }))
            .into_iter()
            .collect();
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {
                "name": format!("shop-{id}-{i}"),
                "namespace": "default",
                "labels": {derive::SERVICE_NAME_LABEL: "shop"},
            },
            "endpoints": endpoints,
            "ports": [
                {"name": "http", "port": addr.port(), "protocol": "TCP"},
                {"name": "metrics", "port": addr.port(), "protocol": "TCP"},
            ],
        })
    });
    let service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9102},
        ]},
    });
    let mut dump = Dump::default();
    for object in slices.chain([service]) {
        cli::load_text(&object.to_string(), id, &mut dump)
            .map_err(|error| anyhow!("member {id}: {error}"))?;
    }
    Ok(MemberSnapshot {
        id: id.to_owned(),
        zone: None,
        contact: replicas.contact,
        index: std::sync::Arc::new(MemberIndex::from_objects(
            &dump.services,
            &dump.endpoint_slices,
        )),
        gateway: None,
    })
}
