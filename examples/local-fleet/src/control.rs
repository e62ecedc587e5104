//! The control plane of the local fleet: the `fleetgate-controller` library's pure derive over
//! the `examples/fleet` Ingress fixtures and member EndpointSlices that this crate synthesizes
//! from the members' ready replica counts, published on the controller's real long-poll endpoint
//! (`GET /v1/config`) on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, Context as _};
use fleetgate_controller::cli::{self, Dump};
use fleetgate_controller::derive::{self, Contact, DeriveOptions, MemberSnapshot};
use fleetgate_controller::endpoints::MemberIndex;
use fleetgate_controller::handoff::{self, ConfigCell, Published};
use tokio::task::JoinHandle;

/// The decision header the derived config asks the plugin to add.
pub const DECISION_HEADER: &str = "x-fleetgate-decision";

/// Directory of the fleet fixtures (`examples/fleet`).
pub fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fleet"))
}

/// The fleet's control plane: Ingresses, member readiness, the served config.
pub struct ControlPlane {
    fleet: Dump,
    options: DeriveOptions,
    ready: Mutex<BTreeMap<String, u32>>,
    cell: ConfigCell,
    token: Option<String>,
    server: Option<(SocketAddr, JoinHandle<()>)>,
}

impl ControlPlane {
    /// Loads the Ingresses of `scenario` (a directory under `examples/fleet`, e.g.
    /// `active-active`) for members `ready` (id -> ready replicas). `failback` = (hold, ramp)
    /// seconds, set through the controller's `fleetgate.io/failback-*` annotations.
    pub fn new(
        scenario: &str,
        ready: &[(&str, u32)],
        failback: Option<(u32, u32)>,
    ) -> anyhow::Result<ControlPlane> {
        let dir = fixtures_dir().join(scenario);
        let mut fleet =
            cli::load_dir(&dir).with_context(|| format!("loading {}", dir.display()))?;
        if let Some((hold, ramp)) = failback {
            for ingress in &mut fleet.ingresses {
                let annotations = ingress
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
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
        let control = ControlPlane {
            fleet,
            options,
            ready: Mutex::new(ready.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect()),
            cell: ConfigCell::default(),
            token: None,
            server: None,
        };
        control.publish()?;
        Ok(control)
    }

    /// Requires `Authorization: Bearer <token>` on the config endpoint (set before `serve`).
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Serves the long-poll endpoint on a free loopback port; answers its address.
    pub async fn serve(&mut self) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = handoff::router(handoff::Endpoint {
            cell: self.cell.clone(),
            token: self.token.as_deref().map(Arc::from),
            waiting: Default::default(),
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        self.server = Some((addr, task));
        Ok(addr)
    }

    /// Sets a member's ready replicas (an EndpointSlice change) and publishes the new config.
    pub fn set_ready(&self, member: &str, ready: u32) -> anyhow::Result<String> {
        self.lock().insert(member.to_owned(), ready);
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

    /// Derives the config from the current state and publishes it; answers its revision.
    pub fn publish(&self) -> anyhow::Result<String> {
        let snapshots = self
            .lock()
            .iter()
            .map(|(id, ready)| member_snapshot(id, *ready))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let derived = derive::derive_config(&self.fleet.ingresses, &snapshots, &self.options)
            .map_err(|error| anyhow!("deriving the config: {error}"))?;
        let revision = derived.revision.clone();
        self.cell.publish(Published {
            revision: derived.revision,
            json: derived.json,
        });
        Ok(revision)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some((_, task)) = self.server.take() {
            task.abort();
        }
    }
}

/// A member as the controller's watches would see it: Service `shop` (`http: 80 -> 8080`,
/// `metrics: 9090 -> 9102`) and one EndpointSlice with `ready` ready endpoints.
fn member_snapshot(id: &str, ready: u32) -> anyhow::Result<MemberSnapshot> {
    let endpoints: Vec<serde_json::Value> = (0..ready)
        .map(|i| {
            serde_json::json!({
                "addresses": [format!("10.0.{}.{}", i / 250, i % 250 + 1)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
            })
        })
        .collect();
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {
            "name": format!("shop-{id}"),
            "namespace": "default",
            "labels": {derive::SERVICE_NAME_LABEL: "shop"},
        },
        "endpoints": endpoints,
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9102, "protocol": "TCP"},
        ],
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
    for object in [slice, service] {
        cli::load_text(&object.to_string(), id, &mut dump)
            .map_err(|error| anyhow!("member {id}: {error}"))?;
    }
    Ok(MemberSnapshot {
        id: id.to_owned(),
        zone: None,
        contact: Contact::Live,
        index: std::sync::Arc::new(MemberIndex::from_objects(
            &dump.services,
            &dump.endpoint_slices,
        )),
    })
}
