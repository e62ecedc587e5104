//! The gateway as an ADS client of the fleetgate controller (or any control plane that emits
//! the same subset): [`XdsGateway::start`] is given only the ADS address and a node id; the
//! listener, routes, clusters, endpoints and plugin all come over xDS.
//!
//! - [`translate`], [`rds`]: pure resource -> gateway translation (the supported subset);
//! - `apply`: the last good state, applied to the running gateway;
//! - `code`: the plugin's `.wasm` (file, inline, or remote with sha256);
//! - `client`: the ADS stream, ACK/NACK.

mod apply;
mod client;
mod code;
pub mod rds;
pub mod translate;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use envoy_types::pb::envoy::config as pb;
use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Name;
use tokio::sync::watch;

pub use client::XdsStatus;

use crate::{Gateway, GatewayLog, GatewayStats, Parts, Routes, Upstreams};

/// The resource types the client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Extension,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Cluster,
        Kind::Endpoint,
        Kind::Listener,
        Kind::Route,
        Kind::Extension,
    ];

    pub fn type_url(self) -> String {
        match self {
            Kind::Cluster => pb::cluster::v3::Cluster::type_url(),
            Kind::Endpoint => pb::endpoint::v3::ClusterLoadAssignment::type_url(),
            Kind::Listener => pb::listener::v3::Listener::type_url(),
            Kind::Route => pb::route::v3::RouteConfiguration::type_url(),
            Kind::Extension => pb::core::v3::TypedExtensionConfig::type_url(),
        }
    }

    /// The kind of `type_url`, if the client knows it.
    pub fn of(type_url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == type_url)
    }
}

/// How to run an xDS-configured gateway.
pub struct XdsGatewayConfig {
    /// The ADS server (`http://host:port`).
    pub ads: String,
    pub node_id: String,
    /// Listen here instead of the listener's address (tests use ephemeral ports).
    pub listen_override: Option<SocketAddr>,
    pub workers: usize,
    pub timer_resolution: Duration,
    pub log_sink: Option<mpsc::Sender<GatewayLog>>,
    /// How long to wait for a listener, its routes and its plugin.
    pub start_timeout: Duration,
}

impl XdsGatewayConfig {
    /// Two workers, the listener's own address, 10 s to get a first config.
    pub fn new(ads: SocketAddr, node_id: &str) -> Self {
        XdsGatewayConfig {
            ads: format!("http://{ads}"),
            node_id: node_id.to_owned(),
            listen_override: None,
            workers: 2,
            timer_resolution: Duration::from_millis(10),
            log_sink: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// A running gateway and its ADS client; both stop when shut down or dropped.
pub struct XdsGateway {
    gateway: Option<Gateway>,
    status: Arc<XdsStatus>,
    upstreams: Upstreams,
    routes: Routes,
    stop: watch::Sender<bool>,
    client: Option<JoinHandle<()>>,
}

impl XdsGateway {
    /// Connects to the ADS server, waits for a listener, its routes and plugin, then starts
    /// the workers. Blocks (call it off async threads).
    pub fn start(config: XdsGatewayConfig) -> anyhow::Result<XdsGateway> {
        let node = Node {
            id: config.node_id.clone(),
            user_agent_name: "fleetgate-local-gateway".to_owned(),
            ..Node::default()
        };
        let mut client = client::AdsClient::new(
            config.ads.clone(),
            node,
            apply::Applied::new(config.listen_override),
        );
        let (ready_tx, ready_rx) = mpsc::channel();
        client.on_ready = Some(ready_tx);
        let status = Arc::clone(&client.status);
        let (stop, stopped) = watch::channel(false);
        let thread = spawn_client(client, stopped)?;
        let mut started = XdsGateway {
            gateway: None,
            status,
            upstreams: Upstreams::new(),
            routes: Routes::new(crate::RouteTable::single("", crate::RetryPolicy::none())),
            stop,
            client: Some(thread),
        };
        let ready = ready_rx
            .recv_timeout(config.start_timeout)
            .map_err(|_| started.no_start(&config))?;
        started.upstreams = ready.upstreams.clone();
        started.routes = ready.routes.clone();
        let gateway = Gateway::launch(Parts {
            listen: ready.listen,
            workers: config.workers,
            routes: ready.routes,
            upstreams: ready.upstreams,
            plugin: ready.plugin,
            timer_resolution: config.timer_resolution,
            log_sink: config.log_sink,
        })
        .context("starting the workers")?;
        started.gateway = Some(gateway);
        Ok(started)
    }

    fn no_start(&self, config: &XdsGatewayConfig) -> anyhow::Error {
        let nack = self
            .status
            .last_nack()
            .map(|n| format!(" (last NACK: {n})"));
        anyhow!(
            "no listener, routes and plugin from {} within {:?}{}",
            config.ads,
            config.start_timeout,
            nack.unwrap_or_default()
        )
    }

    /// Where the gateway listens.
    pub fn addr(&self) -> SocketAddr {
        self.gateway().addr()
    }

    pub fn stats(&self) -> &GatewayStats {
        self.gateway().stats()
    }

    /// What the ADS client did.
    pub fn status(&self) -> &XdsStatus {
        &self.status
    }

    /// The cluster table xDS maintains (read it; xDS overwrites changes).
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The route table RDS maintains.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("started")
    }

    /// Stops the ADS client and the workers.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(thread) = self.client.take() {
            thread
                .join()
                .map_err(|_| anyhow!("the ADS client panicked"))?;
        }
        match self.gateway.take() {
            Some(gateway) => gateway.shutdown(),
            None => Ok(()),
        }
    }
}

/// The ADS client on a thread (and runtime) of its own, so it runs whoever calls `start`.
fn spawn_client(
    client: client::AdsClient,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gateway-xds".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(client.run(stopped)),
                Err(error) => tracing::error!(?error, "ADS client runtime"),
            }
        })
}

impl Drop for XdsGateway {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
