//! The ADS stream (state of the world): subscribes as Envoy does (CDS and LDS wildcard, then
//! EDS, RDS and ECDS by the names those name), applies each response and ACKs it, or NACKs it
//! with the reason in `error_detail` and keeps the last good state. A broken stream is
//! reconnected with the subscriptions and versions held; the gateway serves meanwhile.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::apply::{Applied, Ready};
use super::Kind;
use crate::Counter;

/// What the ADS client did, for tests and operators.
#[derive(Debug, Default)]
pub struct XdsStatus {
    pub acks: Counter,
    pub nacks: Counter,
    /// Streams opened (1 + reconnects).
    pub streams: Counter,
    last_nack: Mutex<Option<String>>,
    accepted: Mutex<BTreeMap<Kind, String>>,
}

impl XdsStatus {
    /// The `error_detail` of the last NACK.
    pub fn last_nack(&self) -> Option<String> {
        self.last_nack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last accepted version of `kind`.
    pub fn accepted_version(&self, kind: Kind) -> Option<String> {
        let accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        accepted.get(&kind).cloned()
    }
}

/// One type's subscription: names (empty = wildcard) and the last version and nonce.
#[derive(Debug, Clone, Default)]
struct Sub {
    names: Vec<String>,
    version: String,
    nonce: String,
    /// Whether the type was requested on this stream.
    sent: bool,
}

pub(crate) struct AdsClient {
    pub(crate) endpoint: String,
    pub(crate) node: Node,
    pub(crate) status: std::sync::Arc<XdsStatus>,
    pub(crate) applied: Applied,
    /// Gets the workers' parts once listener, routes and plugin arrived.
    pub(crate) on_ready: Option<std::sync::mpsc::Sender<Ready>>,
    subs: BTreeMap<Kind, Sub>,
}

/// What applying one response asks for next: new names for a dependent type.
type Follow = Vec<(Kind, Vec<String>)>;

impl AdsClient {
    pub(crate) fn new(endpoint: String, node: Node, applied: Applied) -> Self {
        let wildcard = [
            (Kind::Cluster, Sub::default()),
            (Kind::Listener, Sub::default()),
        ];
        AdsClient {
            endpoint,
            node,
            status: Default::default(),
            applied,
            on_ready: None,
            subs: wildcard.into_iter().collect(),
        }
    }

    /// Runs streams until `shutdown`, reconnecting after a pause when one ends.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                ended = self.stream() => {
                    if let Err(error) = ended {
                        tracing::warn!(%error, "ADS stream to {} ended", self.endpoint);
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn stream(&mut self) -> Result<(), String> {
        let client = AggregatedDiscoveryServiceClient::connect(self.endpoint.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut client = client.max_decoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::channel(16);
        for sub in self.subs.values_mut() {
            sub.sent = false;
            sub.nonce.clear();
        }
        // Envoy's start: CDS and LDS (wildcard), and what the held state already names.
        let kinds: Vec<Kind> = self.subs.keys().copied().collect();
        for kind in kinds {
            self.request(&tx, kind, None).await?;
        }
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        self.status.streams.inc();
        while let Some(response) = responses.message().await.map_err(|e| e.to_string())? {
            self.answer(&tx, response).await?;
        }
        Ok(())
    }

    /// Applies `r`, ACKs or NACKs it, then asks for what it named.
    async fn answer(
        &mut self,
        tx: &mpsc::Sender<DiscoveryRequest>,
        r: DiscoveryResponse,
    ) -> Result<(), String> {
        let Some(kind) = Kind::of(&r.type_url) else {
            let why = format!("type {} is not supported", r.type_url);
            return self.nack_unknown(tx, &r, why).await;
        };
        let applied = self.apply(kind, &r.resources).await;
        let sub = self.subs.entry(kind).or_default();
        sub.nonce = r.nonce.clone();
        let follow = match applied {
            Ok(follow) => {
                sub.version = r.version_info.clone();
                self.record_ack(kind, &r.version_info);
                self.request(tx, kind, None).await?;
                follow
            }
            Err(why) => {
                tracing::warn!(?kind, version = r.version_info, "NACK: {why}");
                self.record_nack(&why);
                self.request(tx, kind, Some(why)).await?;
                Vec::new()
            }
        };
        for (dependent, names) in follow {
            let sub = self.subs.entry(dependent).or_default();
            if sub.names != names || !sub.sent {
                sub.names = names;
                self.request(tx, dependent, None).await?;
            }
        }
        self.signal_ready();
        Ok(())
    }

    async fn apply(
        &mut self,
        kind: Kind,
        resources: &[envoy_types::pb::google::protobuf::Any],
    ) -> Result<Follow, String> {
        let a = &mut self.applied;
        match kind {
            Kind::Cluster => Ok(vec![(Kind::Endpoint, a.clusters(resources).await?)]),
            Kind::Endpoint => a.endpoints(resources).map(|()| Vec::new()),
            Kind::Listener => {
                let (route, plugin) = a.listeners(resources)?;
                Ok(vec![
                    (Kind::Route, vec![route]),
                    (Kind::Extension, vec![plugin]),
                ])
            }
            Kind::Route => a.routes(resources).map(|()| Vec::new()),
            Kind::Extension => a.extensions(resources).await.map(|()| Vec::new()),
        }
    }

    /// Sends `kind`'s subscription with its last accepted version (a NACK if `error`).
    /// A dependent type with no names yet is not requested (an empty list is a wildcard).
    async fn request(
        &mut self,
        tx: &mpsc::Sender<DiscoveryRequest>,
        kind: Kind,
        error: Option<String>,
    ) -> Result<(), String> {
        let Some(sub) = self.subs.get_mut(&kind) else {
            return Ok(());
        };
        let wildcard = matches!(kind, Kind::Cluster | Kind::Listener);
        if sub.names.is_empty() && !wildcard {
            return Ok(());
        }
        sub.sent = true;
        let request = DiscoveryRequest {
            type_url: kind.type_url(),
            resource_names: sub.names.clone(),
            version_info: sub.version.clone(),
            response_nonce: sub.nonce.clone(),
            ..self.base_request(error)
        };
        tx.send(request)
            .await
            .map_err(|_| "the ADS stream closed".to_owned())
    }

    /// A NACK of a response of a type the gateway does not know.
    async fn nack_unknown(
        &mut self,
        tx: &mpsc::Sender<DiscoveryRequest>,
        r: &DiscoveryResponse,
        why: String,
    ) -> Result<(), String> {
        self.record_nack(&why);
        let request = DiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..self.base_request(Some(why))
        };
        tx.send(request)
            .await
            .map_err(|_| "the ADS stream closed".to_owned())
    }

    fn base_request(&self, error: Option<String>) -> DiscoveryRequest {
        DiscoveryRequest {
            node: Some(self.node.clone()),
            error_detail: error.map(|message| RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message,
                details: Vec::new(),
            }),
            ..DiscoveryRequest::default()
        }
    }

    fn record_ack(&self, kind: Kind, version: &str) {
        self.status.acks.inc();
        let mut accepted = self
            .status
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        accepted.insert(kind, version.to_owned());
    }

    fn record_nack(&self, why: &str) {
        self.status.nacks.inc();
        *self
            .status
            .last_nack
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why.to_owned());
    }

    fn signal_ready(&mut self) {
        if self.on_ready.is_none() {
            return;
        }
        if let Some(ready) = self.applied.ready() {
            if let Some(tx) = self.on_ready.take() {
                let _ = tx.send(ready);
            }
        }
    }
}
