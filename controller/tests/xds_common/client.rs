//! A tonic ADS client that subscribes as Envoy does.

use std::time::Duration;

use fleetgate_controller::xds::pb::envoy::config::cluster::v3::Cluster;
use fleetgate_controller::xds::pb::envoy::config::core::v3::{Node, TypedExtensionConfig};
use fleetgate_controller::xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use fleetgate_controller::xds::pb::envoy::config::route::v3::RouteConfiguration;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
};
use fleetgate_controller::xds::pb::google::rpc::Status as RpcStatus;
use fleetgate_controller::xds::validate::plugin_upstreams;
use fleetgate_controller::xds::{CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE};
use fleetgate_plugin::config::ConfigV1;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::check_strict;

pub struct Client {
    node: String,
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Client {
    pub async fn connect(addr: &str, node: &str) -> Client {
        let (tx, rx) = mpsc::channel(16);
        let rx = super::ads_client(addr)
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Client {
            node: node.to_string(),
            tx,
            rx,
        }
    }

    pub async fn request(
        &self,
        type_url: &str,
        names: &[String],
        last: Option<&DiscoveryResponse>,
    ) {
        self.send(type_url, names, last, None).await
    }

    pub async fn send(
        &self,
        type_url: &str,
        names: &[String],
        last: Option<&DiscoveryResponse>,
        error: Option<&str>,
    ) {
        let req = DiscoveryRequest {
            node: Some(Node {
                id: self.node.clone(),
                ..Node::default()
            }),
            type_url: type_url.to_string(),
            resource_names: names.to_vec(),
            version_info: last.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: last.map(|r| r.nonce.clone()).unwrap_or_default(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.to_string(),
                details: vec![],
            }),
            ..DiscoveryRequest::default()
        };
        self.tx.send(req).await.unwrap();
    }

    /// An ACK keeps the last accepted version: the response's own.
    pub async fn ack(&self, r: &DiscoveryResponse, names: &[String]) {
        self.request(&r.type_url, names, Some(r)).await
    }

    pub async fn recv(&mut self, within: Duration) -> Option<DiscoveryResponse> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("stream error: {e}"),
            Err(_) => None,
        }
    }

    /// Whether the server ends the stream (cleanly or with a status) within `within`; a
    /// response instead is a failure.
    #[allow(dead_code)]
    pub async fn ended(&mut self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(Ok(Some(r))) => panic!("a {} response instead of the end", r.type_url),
            Ok(Ok(None)) | Ok(Err(_)) => true,
            Err(_) => false,
        }
    }

    pub async fn expect(&mut self, type_url: &str) -> DiscoveryResponse {
        let r = self
            .recv(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no {type_url} response"));
        assert_eq!(r.type_url, type_url);
        r
    }
}

pub fn decode<M: Message + Default>(r: &DiscoveryResponse) -> Vec<M> {
    r.resources
        .iter()
        .map(|a| M::decode(a.value.as_slice()).unwrap())
        .collect()
}

/// The EDS names the clusters of a CDS response ask for.
pub fn eds_names(cds: &DiscoveryResponse) -> Vec<String> {
    decode::<Cluster>(cds)
        .iter()
        .filter_map(|c| {
            c.eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
        })
        .collect()
}

/// What a subscribed Envoy holds after the initial exchange.
pub struct Held {
    pub cds: DiscoveryResponse,
    pub eds: DiscoveryResponse,
    pub eds_names: Vec<String>,
}

/// Subscribe to every type as Envoy does (CDS and LDS wildcard, then EDS, RDS and ECDS by
/// name), ACK each response, and check what arrived is consistent.
pub async fn subscribe_all(c: &mut Client) -> Held {
    c.request(CLUSTER, &[], None).await;
    let cds = c.expect(CLUSTER).await;
    let clusters: Vec<Cluster> = decode(&cds);
    let eds_names = eds_names(&cds);
    c.ack(&cds, &[]).await;
    c.request(ENDPOINT, &eds_names, None).await;
    let eds = c.expect(ENDPOINT).await;
    c.ack(&eds, &eds_names).await;
    let cla: Vec<ClusterLoadAssignment> = decode(&eds);
    let mut got: Vec<&str> = cla.iter().map(|c| c.cluster_name.as_str()).collect();
    got.sort();
    assert_eq!(got, eds_names, "every EDS cluster has its endpoints");

    c.request(LISTENER, &[], None).await;
    let lds = c.expect(LISTENER).await;
    c.ack(&lds, &[]).await;
    let name = vec!["fleetgate".to_string()];
    c.request(ROUTE, &name, None).await;
    let rds = c.expect(ROUTE).await;
    c.ack(&rds, &name).await;
    c.request(EXTENSION, &name, None).await;
    let ecds = c.expect(EXTENSION).await;
    c.ack(&ecds, &name).await;

    let plugin = plugin_config(&ecds);
    let cluster_names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    for u in plugin_upstreams(&plugin) {
        assert!(cluster_names.contains(&u), "{u} is not a cluster");
    }
    let routes: Vec<RouteConfiguration> = decode(&rds);
    let json = check_strict(&routes[0]).unwrap();
    for route in json["virtualHosts"][0]["routes"].as_array().unwrap() {
        assert_eq!(
            route["route"]["clusterHeader"],
            plugin.cluster_header.as_str()
        );
    }
    Held {
        cds,
        eds,
        eds_names,
    }
}

/// The plugin config the ECDS response carries.
pub fn plugin_config(ecds: &DiscoveryResponse) -> ConfigV1 {
    let ext: Vec<TypedExtensionConfig> = decode(ecds);
    let json = check_strict(&ext[0]).unwrap();
    let text = json["typedConfig"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    serde_json::from_str(text).unwrap()
}
