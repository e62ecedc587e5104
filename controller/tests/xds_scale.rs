//! The scale benchmark's paths at a bounded size (`benches/xds.rs` has the figures): a
//! derivation offered to the snapshot builder is built, published and served; a pod replaced
//! in one member is an endpoint-only update that pushes only that load assignment's type (all
//! of it, to a state-of-the-world client, with only the changed one different) or only that
//! resource (delta).

mod synthetic;
mod xds_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_controller::derive::{DeriveOptions, Derived, Deriver, MemberSnapshot};
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::DiscoveryResponse;
use fleetgate_controller::xds::pb::google::protobuf::Any;
use fleetgate_controller::xds::{feed, AdsServer, Auth, Snapshot, XdsMetrics, CLUSTER, ENDPOINT};
use k8s_openapi::api::networking::v1::Ingress;
use tokio::sync::watch;

use synthetic::{ingress, members, slice, Shape};
use xds_common::client::{eds_names, Client};
use xds_common::delta_client::{Delta, QUIET};
use xds_common::{file_wasm, options};

const APPS: usize = 200;
const MEMBERS: usize = 4;

struct Fleet {
    ingresses: Vec<Arc<Ingress>>,
    members: Vec<MemberSnapshot>,
}

impl Fleet {
    fn derive(&self) -> Derived {
        let opts = DeriveOptions::default();
        let d = Deriver::default().derive(&self.ingresses, &self.members, &opts);
        d.unwrap()
    }

    /// Replace app `i`'s first pod in member `m` (same ready count: same plugin config).
    fn replace_pod(&mut self, i: usize, m: usize, generation: usize) {
        let shape = Shape {
            generation,
            ..Shape::default()
        };
        Arc::make_mut(&mut self.members[m].index).apply_slice(&slice(i, m, shape));
    }
}

/// A server fed by the snapshot builder; returns the feed, the server's address and metrics.
async fn start() -> (
    feed::Feed,
    String,
    XdsMetrics,
    watch::Receiver<Option<Arc<Snapshot>>>,
) {
    let (tx, rx) = watch::channel(None);
    let metrics = XdsMetrics::default();
    let feed = feed::spawn(options(file_wasm()), tx, metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let server = AdsServer::new(rx.clone(), Auth::default(), metrics.clone());
    tokio::spawn(server.serve(listener));
    (feed, addr, metrics, rx)
}

fn by_name(r: &DiscoveryResponse) -> BTreeMap<String, Any> {
    let cla = xds_common::client::decode::<
        fleetgate_controller::xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
    >(r);
    cla.into_iter()
        .zip(&r.resources)
        .map(|(c, any)| (c.cluster_name, any.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_replaced_pushes_only_its_load_assignment() {
    let mut fleet = Fleet {
        ingresses: (0..APPS).map(|i| Arc::new(ingress(i))).collect(),
        members: members(APPS, MEMBERS),
    };
    let (feed, addr, metrics, mut snapshots) = start().await;
    feed.offer(fleet.derive(), fleet.members.clone());
    snapshots.wait_for(Option::is_some).await.unwrap();

    let mut c = Client::connect(&addr, "sotw").await;
    c.request(CLUSTER, &[], None).await;
    let cds = c.expect(CLUSTER).await;
    assert_eq!(
        cds.resources.len(),
        2 * APPS * MEMBERS,
        "a direct and an aggregate each"
    );
    let names = eds_names(&cds);
    c.ack(&cds, &[]).await;
    c.request(ENDPOINT, &names, None).await;
    let before = c.expect(ENDPOINT).await;
    c.ack(&before, &names).await;
    let mut d = Delta::connect(&addr).await;
    for type_url in [CLUSTER, ENDPOINT] {
        d.subscribe(type_url, &["*"]).await;
        let r = d.expect(type_url).await;
        d.answer(&r, None).await;
    }

    fleet.replace_pod(17, 2, 1);
    feed.offer(fleet.derive(), fleet.members.clone());
    let after = c.expect(ENDPOINT).await;
    c.ack(&after, &names).await;
    let (old, new) = (by_name(&before), by_name(&after));
    assert_eq!(new.len(), names.len(), "SotW sends every load assignment");
    let changed: Vec<&String> = new.keys().filter(|n| old[*n] != new[*n]).collect();
    assert_eq!(
        changed,
        ["direct|80|member-02|app17.ns17.svc.cluster.local"]
    );
    let delta = d.expect(ENDPOINT).await;
    let sent: Vec<&str> = delta.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent, [changed[0].as_str()]);
    d.answer(&delta, None).await;
    assert!(c.recv(QUIET).await.is_none(), "no other type is pushed");
    assert!(d.recv(Duration::from_millis(10)).await.is_none());
    let text = exposition(&metrics);
    assert!(
        text.contains("xds_snapshot_build_seconds_count 1\n"),
        "one full build: {text}"
    );
    assert!(
        text.contains("xds_endpoint_update_seconds_count 1\n"),
        "then one update: {text}"
    );
}

fn exposition(metrics: &XdsMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}
