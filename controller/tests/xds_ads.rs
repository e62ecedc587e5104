//! The ADS server against an in-process tonic ADS client over 127.0.0.1: subscription, ACK,
//! NACK, snapshot changes, misbehaving clients.

mod xds_common;

use std::sync::Arc;
use std::time::Duration;

use fleetgate_controller::xds::pb::envoy::config::cluster::v3::Cluster;
use fleetgate_controller::xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
};
use fleetgate_controller::xds::{
    self, AdsServer, Auth, Snapshot, XdsError, XdsMetrics, CLUSTER, ENDPOINT, EXTENSION,
    LISTENER,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use xds_common::client::{decode, eds_names, plugin_config, subscribe_all, Client};
use xds_common::*;

fn snapshot(scenario: &str, hz_b: &str) -> Arc<Snapshot> {
    let (d, members) = fixture(scenario, "hz-a", hz_b);
    let r = xds::build(&d, &members, &options(file_wasm())).unwrap();
    Arc::new(Snapshot::new(&r))
}

/// A running server with the `active-active` snapshot; returns its address.
async fn server(auth: Auth) -> (String, Publisher, XdsMetrics) {
    start_ads(Some(snapshot("active-active", "hz-b")), auth).await
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_client_subscribes_to_every_type_acks_and_gets_consistent_resources() {
    let (addr, _publisher, metrics) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    subscribe_all(&mut c).await;
    assert!(c.recv(QUIET).await.is_none(), "nothing more after the ACKs");
    assert_eq!(metrics.acks.get(), 5);
    assert_eq!(metrics.nacks.get(), 0);
    assert_eq!(metrics.streams.get(), 1);
}

#[tokio::test]
async fn a_member_scaled_to_zero_pushes_endpoints_and_the_plugin_config_not_clusters() {
    let (addr, publisher, _) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    let held = subscribe_all(&mut c).await;
    let started = std::time::Instant::now();
    publisher.send_replace(Some(snapshot("active-active", "hz-b-scaled-to-zero")));
    let eds = c.expect(ENDPOINT).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let cla: Vec<ClusterLoadAssignment> = decode(&eds);
    let hz_b = cla
        .iter()
        .find(|c| c.cluster_name == "direct|80|hz-b|shop.default.svc.cluster.local")
        .unwrap();
    assert!(hz_b.endpoints.iter().all(|l| l.lb_endpoints.is_empty()));
    c.ack(&eds, &held.eds_names).await;
    // The plugin config carries ready counts, so it follows (after the endpoints).
    let ecds = c.expect(EXTENSION).await;
    assert_eq!(plugin_config(&ecds).routes[0].backends[1].ready, Some(0));
    c.ack(&ecds, &["fleetgate".to_string()]).await;
    assert!(c.recv(QUIET).await.is_none(), "no CDS, LDS or RDS push");
    assert_ne!(held.eds.version_info, eds.version_info);
}

#[tokio::test]
async fn a_nack_is_counted_and_not_answered_until_the_snapshot_changes() {
    let (addr, publisher, metrics) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    c.request(CLUSTER, &[], None).await;
    let cds = c.expect(CLUSTER).await;
    for _ in 0..3 {
        // A NACK keeps the previously accepted version (none) and answers the nonce.
        let mut nack = cds.clone();
        nack.version_info.clear();
        c.send(CLUSTER, &[], Some(&nack), Some("cluster rejected"))
            .await;
    }
    assert!(c.recv(QUIET).await.is_none(), "no resend loop");
    assert_eq!(metrics.nacks.get(), 3);
    publisher.send_replace(Some(snapshot("canary-by-header", "hz-b")));
    let again = c.expect(CLUSTER).await;
    assert_ne!(again.version_info, cds.version_info);
    assert!(again.resources.len() > cds.resources.len());
}

#[tokio::test]
async fn a_client_that_never_acks_gets_the_latest_snapshot_and_others_are_unaffected() {
    let (addr, publisher, _) = server(Auth::default()).await;
    let mut silent = Client::connect(&addr, "silent").await;
    silent.request(CLUSTER, &[], None).await;
    silent.expect(CLUSTER).await;
    let variants = [("canary-by-header", "hz-b"), ("active-active", "hz-b")];
    for i in 0..21 {
        let (s, b) = variants[i % 2];
        publisher.send_replace(Some(snapshot(s, b)));
        tokio::task::yield_now().await;
    }
    let mut other = Client::connect(&addr, "other").await;
    subscribe_all(&mut other).await;
    // The silent client may see some intermediate versions, but ends on the latest.
    let latest = snapshot("canary-by-header", "hz-b");
    let mut last = None;
    let mut count = 0;
    while let Some(r) = silent.recv(QUIET).await {
        count += 1;
        last = Some(r);
    }
    assert!((1..=21).contains(&count), "{count}");
    let latest_version = &latest.get(CLUSTER).unwrap().version;
    assert_eq!(&last.unwrap().version_info, latest_version);
}

#[tokio::test]
async fn a_change_is_pushed_clusters_and_endpoints_first() {
    let (addr, publisher, _) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    let held = subscribe_all(&mut c).await;
    // A canary Service: new clusters, their endpoints, a new plugin config.
    publisher.send_replace(Some(snapshot("canary-by-header", "hz-b")));
    let cds = c.expect(CLUSTER).await;
    c.ack(&cds, &[]).await;
    let names = eds_names(&cds);
    assert!(names.len() > held.eds_names.len());
    let mut order = vec![cds.type_url.clone()];
    let mut endpoints = 0;
    while let Some(r) = c.recv(QUIET).await {
        // The ACK of the endpoints pushed for the old names subscribes to the new ones.
        let names = if r.type_url == ENDPOINT {
            endpoints = r.resources.len();
            names.clone()
        } else {
            vec!["fleetgate".into()]
        };
        c.ack(&r, &names).await;
        order.push(r.type_url);
    }
    assert_eq!(order[..3], [CLUSTER, ENDPOINT, EXTENSION]);
    assert_eq!(endpoints, names.len(), "{order:?}");
}

#[tokio::test]
async fn a_pod_replaced_in_place_pushes_only_endpoints() {
    let (addr, publisher, _) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    let held = subscribe_all(&mut c).await;
    publisher.send_replace(Some(pod_replaced()));
    let eds = c.expect(ENDPOINT).await;
    let json = serde_json::to_string(
        &decode::<ClusterLoadAssignment>(&eds)
            .iter()
            .map(|c| check_strict(c).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(json.contains("10.2.9.99"));
    c.ack(&eds, &held.eds_names).await;
    assert!(c.recv(QUIET).await.is_none(), "only EDS changed");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_push_ends_only_its_stream() {
    let (addr, publisher, metrics) = server(Auth::default()).await;
    let c = Client::connect(&addr, "leaving").await;
    for t in [CLUSTER, LISTENER] {
        c.request(t, &[], None).await;
    }
    publisher.send_replace(Some(snapshot("canary-by-header", "hz-b")));
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while metrics.streams.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut next = Client::connect(&addr, "next").await;
    subscribe_all(&mut next).await;
}

#[tokio::test]
async fn an_unknown_node_gets_the_same_snapshot() {
    let (addr, _publisher, _) = server(Auth::default()).await;
    let mut known = Client::connect(&addr, "gateway-1").await;
    let mut stranger = Client::connect(&addr, "").await;
    let a = subscribe_all(&mut known).await;
    let b = subscribe_all(&mut stranger).await;
    assert_eq!(a.cds.version_info, b.cds.version_info);
    assert_eq!(a.cds.resources, b.cds.resources);
}

#[tokio::test]
async fn only_the_subscribed_endpoints_are_sent() {
    let (addr, _publisher, _) = server(Auth::default()).await;
    let mut c = Client::connect(&addr, "gateway-1").await;
    let one = vec!["direct|80|hz-a|shop.default.svc.cluster.local".to_string()];
    c.request(ENDPOINT, &one, None).await;
    let eds = c.expect(ENDPOINT).await;
    let got: Vec<ClusterLoadAssignment> = decode(&eds);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].cluster_name, one[0]);
    // Same version, more names: answered with the new set.
    let two = vec![one[0].clone(), one[0].replace("hz-a", "hz-b")];
    c.ack(&eds, &two).await;
    assert_eq!(
        decode::<ClusterLoadAssignment>(&c.expect(ENDPOINT).await).len(),
        2
    );
}

#[tokio::test]
async fn a_token_is_required_when_set_and_an_open_non_loopback_server_is_refused() {
    let any = "0.0.0.0:18000".parse().unwrap();
    assert!(matches!(
        Auth::new(any, None, false),
        Err(XdsError::Insecure { .. })
    ));
    assert!(Auth::new(any, None, true).is_ok());
    assert!(Auth::new(any, Some("s3cret".into()), false).is_ok());
    assert!(Auth::new("127.0.0.1:18000".parse().unwrap(), None, false).is_ok());

    let auth = Auth::new(any, Some("s3cret".into()), false).unwrap();
    let (addr, _publisher, _) = server(auth).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(addr.clone())
        .await
        .unwrap();
    let (_tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let err = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let mut stream = client
        .stream_aggregated_resources(req)
        .await
        .unwrap()
        .into_inner();
    tx.send(DiscoveryRequest {
        type_url: CLUSTER.into(),
        ..DiscoveryRequest::default()
    })
    .await
    .unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!(r.type_url, CLUSTER);
}

#[tokio::test]
async fn clusters_a_snapshot_drops_are_kept_until_the_plugin_that_stops_naming_them_is_acked() {
    let (addr, publisher, _) = server(Auth::default()).await;
    publisher.send_replace(Some(snapshot("canary-by-header", "hz-b")));
    let mut c = Client::connect(&addr, "gateway-1").await;
    let held = subscribe_all(&mut c).await;
    let canary = "outbound|80|hz-b|shop-canary.default.svc.cluster.local";
    let names = |r: &DiscoveryResponse| -> Vec<String> {
        decode::<Cluster>(r).into_iter().map(|c| c.name).collect()
    };
    assert!(names(&held.cds).iter().any(|n| n == canary));

    publisher.send_replace(Some(snapshot("active-active", "hz-b")));
    let cds = c.expect(CLUSTER).await;
    assert!(cds.version_info.ends_with("+held"), "{}", cds.version_info);
    assert!(names(&cds).iter().any(|n| n == canary), "still there");
    c.ack(&cds, &[]).await;
    let eds = c.expect(ENDPOINT).await;
    c.ack(&eds, &held.eds_names).await;
    let ecds = c.expect(EXTENSION).await;
    assert!(
        c.recv(QUIET).await.is_none(),
        "nothing dropped before the plugin is acked"
    );
    c.ack(&ecds, &["fleetgate".to_string()]).await;

    let cds = c.expect(CLUSTER).await;
    assert!(!cds.version_info.ends_with("+held"));
    assert!(!names(&cds).iter().any(|n| n == canary), "dropped now");
    assert_eq!(
        cds.version_info,
        snapshot("active-active", "hz-b")
            .get(CLUSTER)
            .unwrap()
            .version
    );
    c.ack(&cds, &[]).await;
    let eds = c.expect(ENDPOINT).await;
    assert!(!eds.version_info.ends_with("+held"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_are_all_served() {
    let (addr, _publisher, metrics) = server(Auth::default()).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        // 100 HTTP/2 streams per connection, as many gateways behind few connections would.
        let client = AggregatedDiscoveryServiceClient::connect(addr.clone())
            .await
            .unwrap();
        for _ in 0..100 {
            let mut client = client.clone();
            streams.push(tokio::spawn(async move {
                let (tx, rx) = mpsc::channel(1);
                let mut s = client
                    .stream_aggregated_resources(ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                let req = DiscoveryRequest {
                    type_url: CLUSTER.into(),
                    ..DiscoveryRequest::default()
                };
                tx.send(req).await.unwrap();
                let r = s.message().await.unwrap().unwrap();
                (tx, s, r.version_info)
            }));
        }
    }
    let deadline = Duration::from_secs(20);
    let mut open = Vec::new();
    for s in streams {
        let (tx, s, version) = tokio::time::timeout(deadline, s).await.unwrap().unwrap();
        assert!(!version.is_empty());
        open.push((tx, s));
    }
    assert_eq!(metrics.streams.get(), 1000);
    drop(open);
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while metrics.streams.get() != 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "{} left",
            metrics.streams.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_ends_every_stream_and_closes_the_listener() {
    let (_tx, rx) = watch::channel(Some(snapshot("active-active", "hz-b")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let addr = format!("http://{bound}");
    let metrics = XdsMetrics::default();
    let (stop, stopping) = watch::channel(false);
    let server = AdsServer::new(rx, Auth::default(), metrics.clone()).with_shutdown(stopping);
    let serving = tokio::spawn(server.serve(listener));
    let mut clients = Vec::new();
    for node in ["gateway-1", "gateway-2"] {
        let mut c = Client::connect(&addr, node).await;
        subscribe_all(&mut c).await;
        clients.push(c);
    }
    assert_eq!(metrics.streams.get(), 2);
    stop.send_replace(true);
    for mut c in clients {
        assert!(c.ended(Duration::from_secs(2)).await, "a stream kept going");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while metrics.streams.get() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "streams not ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let served = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "server did not stop: {served:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(bound).await.is_err(),
        "the listener still accepts"
    );
}

#[tokio::test]
async fn a_client_that_subscribes_before_the_first_snapshot_gets_it_when_it_is_published() {
    // A gateway started with the controller asks before the first build is done.
    let (addr, tx, _) = start_ads(None, Auth::default()).await;
    let mut c = Client::connect(&addr, "early").await;
    c.request(CLUSTER, &[], None).await;
    c.request(LISTENER, &[], None).await;
    assert!(c.recv(QUIET).await.is_none(), "nothing to send yet");
    tx.send_replace(Some(snapshot("active-active", "hz-b")));
    let cds = c.expect(CLUSTER).await;
    assert!(!decode::<Cluster>(&cds).is_empty());
    c.expect(LISTENER).await;
}
