//! Delta (incremental) ADS against an in-process tonic client: only what changed is sent.

mod xds_common;

use std::sync::Arc;
use std::time::Duration;

use fleetgate_controller::xds::pb::envoy::config::core::v3::Node;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use fleetgate_controller::xds::pb::google::rpc::Status as RpcStatus;
use fleetgate_controller::xds::{
    self, AdsServer, Auth, Snapshot, XdsMetrics, CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use xds_common::*;

type Publisher = watch::Sender<Option<Arc<Snapshot>>>;

fn snapshot(scenario: &str) -> Arc<Snapshot> {
    let (d, members) = fixture(scenario, "hz-a", "hz-b");
    Arc::new(Snapshot::new(
        &xds::build(&d, &members, &options(file_wasm())).unwrap(),
    ))
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn start(initial: Arc<Snapshot>) -> (Delta, Publisher, XdsMetrics) {
        let (publisher, rx) = watch::channel(Some(initial));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let metrics = XdsMetrics::default();
        tokio::spawn(AdsServer::new(rx, Auth::default(), metrics.clone()).serve(listener));
        let mut client = AggregatedDiscoveryServiceClient::connect(addr)
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (Delta { tx, rx }, publisher, metrics)
    }

    async fn subscribe(&self, type_url: &str, names: &[&str]) {
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

    async fn answer(&self, r: &DeltaDiscoveryResponse, error: Option<&str>) {
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

    async fn recv(&mut self, within: Duration) -> Option<DeltaDiscoveryResponse> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(r) => r.unwrap(),
            Err(_) => None,
        }
    }

    async fn expect(&mut self, type_url: &str) -> DeltaDiscoveryResponse {
        let r = self.recv(Duration::from_secs(5)).await.expect("a response");
        assert_eq!(r.type_url, type_url);
        r
    }

    /// Subscribe to every type (CDS and LDS wildcard) and ACK everything.
    async fn subscribe_all(&mut self) -> usize {
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

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_pod_replaced_sends_one_load_assignment() {
    let (d, mut members) = fixture("active-active", "hz-a", "hz-b");
    let (mut c, publisher, metrics) = Delta::start(snapshot("active-active")).await;
    assert!(c.subscribe_all().await >= 2);
    let dump = fleetgate_controller::cli::load_dir(&member_dir("hz-b")).unwrap();
    let mut slice = dump.endpoint_slices[0].clone();
    slice.endpoints[0].addresses = vec!["10.2.9.99".into()];
    let hz_b = members.iter_mut().find(|m| m.id == "hz-b").unwrap();
    let mut index = (*hz_b.index).clone();
    index.apply_slice(&slice);
    hz_b.index = Arc::new(index);
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    publisher.send_replace(Some(Arc::new(Snapshot::new(&r))));
    let eds = c.expect(ENDPOINT).await;
    let names: Vec<&str> = eds.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["direct|80|hz-b|shop.default.svc.cluster.local"]);
    assert!(eds.removed_resources.is_empty());
    c.answer(&eds, None).await;
    assert!(c.recv(QUIET).await.is_none(), "nothing else changed");
    assert_eq!(metrics.acks.get(), 6);
}

#[tokio::test]
async fn removed_clusters_go_only_after_the_plugin_that_stops_naming_them_is_acked() {
    let (mut c, publisher, _) = Delta::start(snapshot("canary-by-header")).await;
    c.subscribe_all().await;
    publisher.send_replace(Some(snapshot("active-active")));
    let mut seen = Vec::new();
    let mut removed = Vec::new();
    while let Some(r) = c.recv(QUIET).await {
        seen.push(r.type_url.clone());
        if r.type_url == CLUSTER {
            removed.extend(r.removed_resources.clone());
        }
        if r.type_url == EXTENSION {
            assert!(
                removed.is_empty(),
                "nothing removed before the plugin is acked"
            );
        }
        c.answer(&r, None).await;
    }
    let first_cluster = seen.iter().position(|t| t == CLUSTER).unwrap();
    let plugin = seen.iter().position(|t| t == EXTENSION).unwrap();
    assert!(plugin < first_cluster, "{seen:?}");
    assert!(removed.contains(&"outbound|80|hz-b|shop-canary.default.svc.cluster.local".to_string()));
}

#[tokio::test]
async fn a_nack_is_not_answered_until_the_resource_changes() {
    let (mut c, publisher, metrics) = Delta::start(snapshot("active-active")).await;
    c.subscribe(CLUSTER, &[]).await;
    let cds = c.expect(CLUSTER).await;
    c.answer(&cds, Some("rejected")).await;
    assert!(c.recv(QUIET).await.is_none());
    assert_eq!(metrics.nacks.get(), 1);
    publisher.send_replace(Some(snapshot("canary-by-header")));
    let again = c.expect(CLUSTER).await;
    assert!(
        again
            .resources
            .iter()
            .all(|r| r.name.contains("shop-canary")),
        "only the new clusters"
    );
}
