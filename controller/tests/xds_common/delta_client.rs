//! A tonic delta ADS client.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_controller::xds::pb::envoy::config::core::v3::Node;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use fleetgate_controller::xds::pb::google::rpc::Status as RpcStatus;
use fleetgate_controller::xds::{
    Auth, Snapshot, XdsMetrics, CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub use super::Publisher;

pub const QUIET: Duration = Duration::from_millis(300);

pub struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    pub async fn start(initial: Arc<Snapshot>) -> (Delta, Publisher, XdsMetrics) {
        let (addr, publisher, metrics) = super::start_ads(Some(initial), Auth::default()).await;
        (Delta::connect(&addr).await, publisher, metrics)
    }

    pub async fn connect(addr: &str) -> Delta {
        let (tx, rx) = mpsc::channel(16);
        let rx = super::ads_client(addr)
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Delta { tx, rx }
    }

    pub async fn subscribe(&self, type_url: &str, names: &[&str]) {
        self.tx
            .send(DeltaDiscoveryRequest {
                node: Some(Node {
                    id: "gateway-1".into(),
                    ..Node::default()
                }),
                type_url: type_url.into(),
                resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
                ..DeltaDiscoveryRequest::default()
            })
            .await
            .unwrap();
    }

    pub async fn answer(&self, r: &DeltaDiscoveryResponse, error: Option<&str>) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                error_detail: error.map(|m| RpcStatus {
                    code: 3,
                    message: m.into(),
                    details: vec![],
                }),
                ..DeltaDiscoveryRequest::default()
            })
            .await
            .unwrap();
    }

    pub async fn recv(&mut self, within: Duration) -> Option<DeltaDiscoveryResponse> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(r) => r.unwrap(),
            Err(_) => None,
        }
    }

    pub async fn expect(&mut self, type_url: &str) -> DeltaDiscoveryResponse {
        self.expect_within(type_url, Duration::from_secs(5)).await
    }

    pub async fn expect_within(
        &mut self,
        type_url: &str,
        within: Duration,
    ) -> DeltaDiscoveryResponse {
        let r = self.recv(within).await.expect("a response");
        assert_eq!(r.type_url, type_url);
        r
    }

    /// Subscribe to every type (CDS and LDS wildcard) and ACK everything.
    pub async fn subscribe_all(&mut self) -> usize {
        self.subscribe(CLUSTER, &[]).await;
        let cds = self.expect(CLUSTER).await;
        self.answer(&cds, None).await;
        self.subscribe(ENDPOINT, &["*"]).await;
        let eds = self.expect(ENDPOINT).await;
        self.answer(&eds, None).await;
        for t in [LISTENER, ROUTE, EXTENSION] {
            let names: &[&str] = if t == LISTENER { &[] } else { &["fleetgate"] };
            self.subscribe(t, names).await;
            let r = self.expect(t).await;
            assert_eq!(r.resources.len(), 1);
            self.answer(&r, None).await;
        }
        assert!(self.recv(QUIET).await.is_none());
        eds.resources.len()
    }
}
