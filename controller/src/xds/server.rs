//! The state-of-the-world ADS server.
//!
//! Snapshots arrive through a `watch` channel (the latest wins; a slow stream skips the ones it
//! missed). Per stream and type it remembers the version and nonce it last sent and the names
//! subscribed. A request answers the last response by nonce (older nonces are ignored): with
//! `error_detail` it is a NACK, logged and counted and *not* answered (the same resources would
//! be NACKed again; the next snapshot is sent when it comes); otherwise it is an ACK, or a new
//! subscription or a change of names, which is answered. On a new snapshot the changed types
//! are pushed in [`super::TYPES`] order (make before break): clusters and endpoints before the
//! listener, routes and plugin that use them; and clusters or endpoints the new snapshot drops
//! are kept (under a version of their own) until the client has acknowledged the listener,
//! routes and plugin of that snapshot, which no longer name them.
//!
//! Every node is served the same snapshot; its id is only logged. Delta (incremental) ADS is
//! served too, by [`super::delta`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::delta::{DeltaMsg, DeltaStream};
use super::grpc::AdsService;
use super::pb::envoy::config::core::v3::Node;
use super::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use super::snapshot::{Selection, Snapshot, TypeSnapshot};
use super::wire::WireResponse;
use super::{XdsError, CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE, TYPES};
use crate::handoff::authorized;

/// The snapshots the server streams; `None` until the first one is built.
pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Required as gRPC metadata `authorization: Bearer <token>`; `None` = anyone.
    pub token: Option<String>,
    /// Serve TLS, with client certificates when it has a client CA.
    pub tls: Option<Tls>,
}

/// The server's TLS identity and, for mutual TLS, the CA client certificates must chain to.
#[derive(Clone)]
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The policy for a server on `addr`: without a token it must be loopback, or `insecure`.
    pub fn new(addr: SocketAddr, token: Option<String>, insecure: bool) -> Result<Auth, XdsError> {
        Auth::with_tls(addr, token, None, insecure)
    }

    /// [`Auth::new`] with TLS: client certificates (a client CA) close the server as a token
    /// does; TLS alone only encrypts.
    pub fn with_tls(
        addr: SocketAddr,
        token: Option<String>,
        tls: Option<Tls>,
        insecure: bool,
    ) -> Result<Auth, XdsError> {
        let token = token.filter(|t| !t.is_empty());
        let mutual = tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some());
        if token.is_none() && !mutual && !insecure && !addr.ip().is_loopback() {
            return Err(XdsError::Insecure { addr });
        }
        Ok(Auth { token, tls })
    }

    fn server_tls(&self) -> Option<ServerTlsConfig> {
        let t = self.tls.as_ref()?;
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&t.cert_pem, &t.key_pem));
        Some(match &t.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        })
    }
}

pub use super::metrics::XdsMetrics;

/// The ADS service.
#[derive(Debug, Clone)]
pub struct AdsServer {
    snapshots: Snapshots,
    auth: Arc<Auth>,
    metrics: XdsMetrics,
    /// Turns true when the controller stops: streams end, no new connections.
    shutdown: Option<watch::Receiver<bool>>,
}

impl AdsServer {
    pub fn new(snapshots: Snapshots, auth: Auth, metrics: XdsMetrics) -> Self {
        AdsServer {
            snapshots,
            auth: Arc::new(auth),
            metrics,
            shutdown: None,
        }
    }

    /// What every stream's driver gets: the metrics and the shutdown signal.
    fn stream_context(&self) -> (XdsMetrics, Option<watch::Receiver<bool>>) {
        (self.metrics.clone(), self.shutdown.clone())
    }

    /// Stop when `shutdown` turns true: every stream ends (gateways reconnect to another
    /// replica) and the listener closes.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Serve gRPC on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> Result<(), XdsError> {
        let shutdown = self.shutdown.clone();
        let tls = self.auth.server_tls();
        let service = AdsService(Arc::new(self));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        // No Nagle delay on pushes; keepalive finds gateways that vanished.
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(std::time::Duration::from_secs(30)));
        builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stopped(shutdown))
            .await?;
        Ok(())
    }
}

/// Serve ADS on `listener` with fresh metrics (see [`AdsServer`] to keep them).
pub async fn serve(
    listener: TcpListener,
    snapshots: Snapshots,
    auth: Auth,
) -> Result<(), XdsError> {
    AdsServer::new(snapshots, auth, XdsMetrics::default())
        .serve(listener)
        .await
}

pub(crate) type SentMsg = Result<WireResponse, Status>;

impl AdsServer {
    /// A state-of-the-world stream: checked, then driven by its own task.
    pub(crate) fn open_sotw(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ReceiverStream<SentMsg>>, Status> {
        self.check(&request)?;
        // Small: a client that does not read holds its stream task, not our memory.
        let (tx, rx) = mpsc::channel(4);
        let stream = AdsStream {
            snapshots: self.snapshots.clone(),
            metrics: self.metrics.clone(),
            tx,
            subs: BTreeMap::new(),
            nonce: 0,
            node: None,
        };
        let (metrics, shutdown) = self.stream_context();
        tokio::spawn(drive(stream, request.into_inner(), metrics, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// An incremental stream (see [`super::delta`]).
    pub(crate) fn open_delta(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<ReceiverStream<DeltaMsg>>, Status> {
        self.check(&request)?;
        let (tx, rx) = mpsc::channel(4);
        let stream = DeltaStream::new(self.snapshots.clone(), self.metrics.clone(), tx);
        let (metrics, shutdown) = self.stream_context();
        tokio::spawn(drive(stream, request.into_inner(), metrics, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    fn check<R>(&self, request: &Request<R>) -> Result<(), Status> {
        let headers = request.metadata().clone().into_headers();
        match authorized(&headers, self.auth.token.as_deref()) {
            true => Ok(()),
            false => Err(Status::unauthenticated("missing or wrong bearer token")),
        }
    }
}

/// One type's subscription on one stream.
#[derive(Debug, Default)]
struct Subscription {
    names: Vec<String>,
    /// The last response.
    sent: Option<Sent>,
    /// The last version the client acknowledged.
    acked: Option<String>,
    /// Where `names` are in the resources last sent.
    selection: Selection,
}

#[derive(Debug)]
struct Sent {
    version: String,
    nonce: String,
    resources: Arc<TypeSnapshot>,
}

/// The client went away (its response stream was dropped).
pub(crate) struct Gone;

/// The types that name clusters (the listener's routes read the plugin's header; the plugin
/// names the upstreams).
const USERS: [&str; 3] = [LISTENER, ROUTE, EXTENSION];

struct AdsStream {
    snapshots: Snapshots,
    metrics: XdsMetrics,
    tx: mpsc::Sender<SentMsg>,
    subs: BTreeMap<String, Subscription>,
    nonce: u64,
    node: Option<String>,
}

/// What the state-of-the-world and the delta protocol do differently; [`drive`] is the rest.
pub(crate) trait Protocol {
    type Request;
    /// For logs: `ADS` or `delta ADS`.
    const NAME: &'static str;
    fn snapshots(&mut self) -> &mut Snapshots;
    fn node(&self) -> Option<&str>;
    async fn on_request(&mut self, req: Self::Request) -> Result<(), Gone>;
    /// A new snapshot was published.
    async fn on_snapshot(&mut self) -> Result<(), Gone>;
}

/// One ADS stream: requests and published snapshots, until the client or the server goes.
pub(crate) async fn drive<P: Protocol>(
    mut p: P,
    mut incoming: Streaming<P::Request>,
    metrics: XdsMetrics,
    shutdown: Option<watch::Receiver<bool>>,
) {
    metrics.streams.inc();
    let stopping = stopped(shutdown);
    tokio::pin!(stopping);
    let end = loop {
        let step = tokio::select! {
            () = &mut stopping => break "server shutting down".to_string(),
            msg = incoming.message() => match msg {
                Ok(Some(req)) => Step::Request(req),
                Ok(None) => break "client closed the stream".to_string(),
                Err(e) => break format!("stream error: {e}"),
            },
            changed = p.snapshots().changed() => match changed {
                Ok(()) => Step::Snapshot,
                Err(_) => break "server shutting down".to_string(),
            },
        };
        let done = match step {
            Step::Request(req) => p.on_request(req).await,
            Step::Snapshot => p.on_snapshot().await,
        };
        if done.is_err() {
            break "client went away mid-push".to_string();
        }
    };
    metrics.streams.dec();
    info!(node = ?p.node(), "{} stream ended: {end}", P::NAME);
}

enum Step<R> {
    Request(R),
    Snapshot,
}

/// Resolves once `shutdown` turns true; never without one (or once its sender is gone).
async fn stopped(shutdown: Option<watch::Receiver<bool>>) {
    if let Some(mut rx) = shutdown {
        if rx.wait_for(|s| *s).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// The node id of a stream, from its first request.
pub(crate) fn note_node(node: &mut Option<String>, from: Option<&Node>, what: &str) {
    if node.is_none() {
        let id = from.map(|n| n.id.clone()).unwrap_or_default();
        info!(node = %id, "{what} stream opened");
        *node = Some(id);
    }
}

impl Protocol for AdsStream {
    type Request = DiscoveryRequest;
    const NAME: &'static str = "ADS";

    fn snapshots(&mut self) -> &mut Snapshots {
        &mut self.snapshots
    }

    fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Gone> {
        AdsStream::on_request(self, req).await
    }

    async fn on_snapshot(&mut self) -> Result<(), Gone> {
        let current = self.snapshots.borrow_and_update().clone();
        self.push(current).await
    }
}

impl AdsStream {
    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Gone> {
        note_node(&mut self.node, req.node.as_ref(), "ADS");
        if !TYPES.contains(&req.type_url.as_str()) {
            debug!(type_url = %req.type_url, "type not served; ignored");
            return Ok(());
        }
        let sub = self.subs.entry(req.type_url.clone()).or_default();
        let sent = sub.sent.as_ref();
        if !req.response_nonce.is_empty()
            && sent.map(|s| s.nonce.as_str()) != Some(&req.response_nonce)
        {
            debug!(type_url = %req.type_url, nonce = %req.response_nonce, "stale nonce; ignored");
            return Ok(());
        }
        let resend = sent.is_none() || sub.names != req.resource_names;
        if sub.names != req.resource_names {
            sub.selection = Selection::default();
        }
        sub.names = req.resource_names;
        if let Some(err) = req.error_detail {
            self.metrics.nacked(&req.type_url);
            warn!(node = ?self.node, type_url = %req.type_url, rejected = ?sent.map(|s| &s.version),
                code = err.code, "xDS update rejected (NACK): {}; not re-sent until the next snapshot",
                err.message);
            return Ok(());
        }
        if sent.is_some_and(|s| s.version == req.version_info) {
            self.metrics.acks.inc();
            sub.acked = Some(req.version_info);
        }
        let current = self.snapshots.borrow().clone();
        if resend {
            if let Some(snapshot) = &current {
                self.send(snapshot, &req.type_url).await?;
            }
        }
        // An ACK may release clusters held for make-before-break.
        self.push(current).await
    }

    /// Send every subscribed type whose wanted resources differ from what was sent, in
    /// make-before-break order.
    async fn push(&mut self, snapshot: Option<Arc<Snapshot>>) -> Result<(), Gone> {
        let Some(snapshot) = snapshot else {
            return Ok(());
        };
        for type_url in TYPES {
            // Subscribed types only; one subscribed before the first snapshot has nothing sent.
            let Some(sub) = self.subs.get(type_url) else {
                continue;
            };
            let sent = sub.sent.as_ref().map(|s| s.version.clone());
            let wanted = self.wanted(&snapshot, type_url);
            if wanted.is_some_and(|w| sent.as_ref() != Some(&w.version)) {
                self.send(&snapshot, type_url).await?;
            }
        }
        Ok(())
    }

    /// What the stream should have of `type_url`: the snapshot's resources, except that
    /// clusters and endpoints it would drop are kept while the listener, routes or plugin that
    /// may still name them are not yet acknowledged at the snapshot's version.
    fn wanted(&self, snapshot: &Snapshot, type_url: &str) -> Option<Arc<TypeSnapshot>> {
        let next = snapshot.get(type_url)?;
        let sent = self.subs.get(type_url)?.sent.as_ref();
        let holds = type_url == CLUSTER || type_url == ENDPOINT;
        match sent {
            Some(s) if holds && next.removes_from(&s.resources) && self.users_behind(snapshot) => {
                Some(Arc::new(next.keeping(&s.resources)))
            }
            _ => Some(Arc::clone(next)),
        }
    }

    fn users_behind(&self, snapshot: &Snapshot) -> bool {
        USERS
            .iter()
            .any(|t| match (self.subs.get(*t), snapshot.get(t)) {
                (Some(sub), Some(s)) => sub.acked.as_deref() != Some(s.version.as_str()),
                _ => false,
            })
    }

    async fn send(&mut self, snapshot: &Snapshot, type_url: &str) -> Result<(), Gone> {
        let Some(type_url) = TYPES.into_iter().find(|t| *t == type_url) else {
            return Ok(());
        };
        let Some(resources) = self.wanted(snapshot, type_url) else {
            return Ok(());
        };
        let Some(sub) = self.subs.get_mut(type_url) else {
            return Ok(());
        };
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let at = resources.select_cached(&sub.names, &mut sub.selection);
        let response = WireResponse::new(type_url, Arc::clone(&resources), at, nonce.clone());
        debug!(type_url, version = %resources.version, n = response.len(), "push");
        sub.sent = Some(Sent {
            version: resources.version.clone(),
            nonce,
            resources,
        });
        self.tx.send(Ok(response)).await.map_err(|_| Gone)?;
        self.metrics.pushed(type_url);
        Ok(())
    }
}
