//! Delta (incremental) ADS against an in-process tonic client: only what changed is sent.

mod xds_common;

use std::sync::Arc;

use fleetgate_controller::xds::{self, Snapshot, CLUSTER, ENDPOINT, EXTENSION};
use xds_common::delta_client::{Delta, QUIET};
use xds_common::*;

fn snapshot(scenario: &str) -> Arc<Snapshot> {
    let (d, members) = fixture(scenario, "hz-a", "hz-b");
    Arc::new(Snapshot::new(
        &xds::build(&d, &members, &options(file_wasm())).unwrap(),
    ))
}

#[tokio::test]
async fn a_pod_replaced_sends_one_load_assignment() {
    let (mut c, publisher, metrics) = Delta::start(snapshot("active-active")).await;
    assert!(c.subscribe_all().await >= 2);
    publisher.send_replace(Some(pod_replaced()));
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

#[tokio::test]
async fn a_client_that_subscribes_before_the_first_snapshot_gets_it_when_it_is_published() {
    let (addr, publisher, _) = start_ads(None, xds::Auth::default()).await;
    let mut c = Delta::connect(&addr).await;
    c.subscribe(CLUSTER, &[]).await;
    assert!(c.recv(QUIET).await.is_none(), "nothing to send yet");
    publisher.send_replace(Some(snapshot("active-active")));
    let cds = c.expect(CLUSTER).await;
    assert!(!cds.resources.is_empty());
}
