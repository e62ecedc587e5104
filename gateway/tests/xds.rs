//! The local gateway as an ADS client of the controller's real ADS server on 127.0.0.1 (through
//! the local fleet's control plane, which builds the snapshot with `xds::build` from member
//! EndpointSlices that carry the members' loopback addresses): what it ACKs and applies, what
//! it NACKs and why, that it keeps serving its last good state, that an ECDS update lets
//! requests in flight finish, and that EDS moves traffic. Bounded: at most 100 requests/s for
//! a couple of seconds per test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::util::pack_any;
use fleetgate_controller::xds::{clusters, listener, Resources, WasmCode};
use fleetgate_local_fleet::fleet::{direct_name, upstream_name, wasm_path};
use fleetgate_local_fleet::load::{self, served_by, LoadSpec, Sample, Tally};
use fleetgate_local_fleet::timed::{runtime, serial};
use fleetgate_local_fleet::{Fleet, FleetSpec};
use fleetgate_local_gateway::xds::Kind;
use fleetgate_wasm_tests::Module;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use sha2::{Digest, Sha256};

async fn fleet(delay: Duration) -> Fleet {
    let mut spec = FleetSpec::new(&["hz-a", "hz-b"]);
    spec.service_delay = delay;
    Fleet::start(spec).await.expect("fleet starts through xDS")
}

/// Runs `test` alone on a fresh fleet whose replicas answer after `delay`.
fn with_fleet<F: std::future::Future<Output = ()>>(delay: Duration, test: impl FnOnce(Fleet) -> F) {
    let _serial = serial();
    runtime().block_on(async { test(fleet(delay).await).await });
}

/// Polls `done` every 10 ms for up to 5 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `n` sequential GETs through the gateway.
async fn gets(fleet: &Fleet, n: usize) -> Vec<Sample> {
    load::sequential_gets(fleet.addr(), n).await
}

#[test]
fn a_valid_snapshot_is_acked_and_becomes_clusters_endpoints_routes_and_the_plugin() {
    with_fleet(Duration::ZERO, |fleet| async move {
        let status = fleet.gateway.status();
        for t in Kind::ALL {
            assert!(status.accepted_version(t).is_some(), "{t:?} not accepted");
        }
        assert_eq!(status.nacks.get(), 0, "{:?}", status.last_nack());
        assert_eq!(fleet.control.xds_metrics().nacks.get(), 0);
        eventually("the server to count 5 ACKs", || {
            fleet.control.xds_metrics().acks.get() >= 5
        })
        .await;

        // EDS: each member's cluster has exactly its replicas' loopback addresses.
        let upstreams = fleet.gateway.upstreams();
        for (id, member) in &fleet.members {
            let mut got = upstreams
                .cluster(&direct_name(id))
                .unwrap()
                .endpoints()
                .to_vec();
            let mut want = member.addrs();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{id}");
        }
        // Aggregates: this member first, then the other.
        let names = |agg: &str| -> Vec<String> {
            let resolved = upstreams.resolve(agg).unwrap();
            resolved
                .priorities
                .iter()
                .map(|c| c.name().to_owned())
                .collect()
        };
        assert_eq!(
            names(&upstream_name("hz-b")),
            [direct_name("hz-b"), direct_name("hz-a")]
        );
        // RDS: the plugin's cluster header, retries on errors for idempotent methods only.
        let routes = fleet.gateway.routes().current();
        assert_eq!(routes.cluster_header, "x-fleetgate-upstream");
        assert!(routes.mirror_header.is_some());
        assert!(routes.rule("GET").unwrap().retry.retry_idempotent_on_errors);
        let post = &routes.rule("POST").unwrap().retry;
        assert!(!post.retry_idempotent_on_errors);
        assert_eq!(post.num_retries, 2);

        // ECDS: the plugin runs the derived config and routes to both members.
        let samples = gets(&fleet, 40).await;
        assert_eq!(Tally::of(&samples).failed, 0);
        assert!(
            samples.iter().all(|s| s.decided.is_some()),
            "the plugin decides"
        );
        assert!(served_by(&samples, "hz-a") > 5 && served_by(&samples, "hz-b") > 5);
    });
}

/// The listener with an extra HTTP filter before the router.
fn with_lua_filter(mut r: Resources) -> Resources {
    let filter = &mut r.listeners[0].filter_chains[0].filters[0];
    let Some(ConfigType::TypedConfig(any)) = &mut filter.config_type else {
        panic!("no HCM");
    };
    let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    hcm.http_filters.insert(
        1,
        HttpFilter {
            name: "envoy.filters.http.lua".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Lua::default(),
            ))),
            ..HttpFilter::default()
        },
    );
    *any = pack_any(hcm);
    r
}

/// Every route sends to a fixed cluster instead of reading the cluster header.
fn without_cluster_header(mut r: Resources) -> Resources {
    for route in &mut r.routes[0].virtual_hosts[0].routes {
        if let Some(Action::Route(action)) = &mut route.action {
            action.cluster_specifier = Some(ClusterSpecifier::Cluster(direct_name("hz-a")));
        }
    }
    r
}

#[test]
fn unsupported_resources_are_nacked_with_the_reason_and_the_last_good_state_keeps_serving() {
    with_fleet(Duration::ZERO, |fleet| async move {
        let status = fleet.gateway.status();
        let good = fleet.control.resources().unwrap();
        let listener_version = status.accepted_version(Kind::Listener);
        let cases: [(Resources, &str); 2] = [
            (
                with_lua_filter(good.clone()),
                "HTTP filter \"envoy.filters.http.lua\"",
            ),
            (without_cluster_header(good.clone()), "no cluster_header"),
        ];
        for (n, (broken, reason)) in cases.into_iter().enumerate() {
            fleet.control.publish_resources(&broken);
            eventually("a NACK", || status.nacks.get() > n as u64).await;
            let nack = status.last_nack().unwrap();
            assert!(nack.contains(reason), "{nack:?} should say {reason:?}");
            assert!(
                nack.contains("not supported") || nack.contains("only"),
                "{nack}"
            );
            eventually("the server to count the NACK", || {
                fleet.control.xds_metrics().nacks.get() > n as u64
            })
            .await;
            // The last good listener, routes and plugin keep serving.
            let samples = gets(&fleet, 20).await;
            assert_eq!(Tally::of(&samples).failed, 0, "after NACK {n}");
            assert!(samples.iter().all(|s| s.decided.is_some()));
            fleet.control.publish_resources(&good);
        }
        assert_eq!(status.accepted_version(Kind::Listener), listener_version);
        assert_eq!(
            fleet.gateway.routes().current().cluster_header,
            "x-fleetgate-upstream"
        );
    });
}

#[test]
fn an_ecds_update_starts_a_new_plugin_instance_and_requests_in_flight_finish() {
    with_fleet(Duration::from_millis(300), |fleet| async move {
        // Slow replicas: about 30 requests are in flight at any time.
        let before = fleet.gateway.status().accepted_version(Kind::Extension);
        let origin = Instant::now();
        let load = load::spawn_collect(
            fleet.addr(),
            LoadSpec::get(100, Duration::from_secs(2)),
            origin,
        );
        let change_at = Duration::from_millis(800);
        tokio::time::sleep_until((origin + change_at).into()).await;
        // hz-b's readiness changes: its EDS cluster and the plugin config (ECDS) change.
        fleet.control.set_ready("hz-b", 0).unwrap();
        let samples = load.await.unwrap();
        assert_ne!(
            fleet.gateway.status().accepted_version(Kind::Extension),
            before
        );
        let hz_b = fleet.gateway.upstreams().cluster(&direct_name("hz-b"));
        assert!(
            hz_b.unwrap().endpoints().is_empty(),
            "scaled to 0: EDS empty"
        );

        assert_eq!(Tally::of(&samples).failed, 0, "no request is dropped");
        // Decided by the old instance, sent to hz-b, answered after the change.
        let in_flight = samples.iter().filter(|s| {
            s.sent < change_at
                && s.sent + s.latency > change_at + Duration::from_millis(50)
                && s.decided.as_deref() == Some("hz-b")
        });
        let in_flight: Vec<&Sample> = in_flight.collect();
        assert!(
            in_flight.len() >= 5,
            "requests in flight on the old instance: {}",
            in_flight.len()
        );
        assert!(in_flight
            .iter()
            .all(|s| s.ok() && s.served.as_deref() == Some("hz-b")));
        // The new instance decides with the new config: nothing for hz-b.
        let after: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent > change_at + Duration::from_millis(200))
            .collect();
        assert!(after.len() > 50);
        assert!(after.iter().all(|s| s.decided.as_deref() == Some("hz-a")));
    });
}

/// `r` with every endpoint of `cluster` in `health`.
fn with_health(mut r: Resources, cluster: &str, health: HealthStatus) -> Resources {
    let cla = r
        .endpoints
        .iter_mut()
        .find(|e| e.cluster_name == cluster)
        .unwrap();
    for ep in cla.endpoints.iter_mut().flat_map(|l| &mut l.lb_endpoints) {
        ep.health_status = health as i32;
    }
    r
}

#[test]
fn an_eds_change_moves_traffic_and_draining_endpoints_get_no_new_requests() {
    with_fleet(Duration::ZERO, |fleet| async move {
        let good = fleet.control.resources().unwrap();
        let plugin_version = fleet.gateway.status().accepted_version(Kind::Extension);
        let drained = with_health(good.clone(), &direct_name("hz-b"), HealthStatus::Draining);
        fleet.control.publish_resources(&drained);
        let upstreams = fleet.gateway.upstreams().clone();
        eventually("hz-b's cluster to drain", || {
            upstreams
                .cluster(&direct_name("hz-b"))
                .unwrap()
                .endpoints()
                .is_empty()
        })
        .await;
        // Only EDS changed: the plugin still picks hz-b for about half, the aggregate spills
        // those to hz-a.
        assert_eq!(
            fleet.gateway.status().accepted_version(Kind::Extension),
            plugin_version
        );
        let samples = gets(&fleet, 40).await;
        assert_eq!(Tally::of(&samples).failed, 0);
        assert!(samples.iter().any(|s| s.decided.as_deref() == Some("hz-b")));
        assert_eq!(
            served_by(&samples, "hz-a"),
            samples.len(),
            "hz-b takes no new requests"
        );

        fleet.control.publish_resources(&good);
        eventually("hz-b's endpoints back", || {
            upstreams
                .cluster(&direct_name("hz-b"))
                .unwrap()
                .endpoints()
                .len()
                == 3
        })
        .await;
        let samples = gets(&fleet, 40).await;
        assert!(served_by(&samples, "hz-b") > 5, "traffic back on hz-b");
    });
}

/// Serves `body` for every GET on a loopback port; counts the requests.
async fn serve_bytes(body: Vec<u8>) -> (std::net::SocketAddr, std::sync::Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let body = bytes::Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let body = body.clone();
            let counter = counter.clone();
            let service = service_fn(move |_request| {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = http::Response::new(Full::new(body.clone()));
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    (addr, hits)
}

/// `r` with the plugin's code fetched from `uri` (through the wasm source cluster).
fn with_remote_code(mut r: Resources, config: &str, uri: &str, sha256: &str) -> Resources {
    let code = WasmCode::Remote {
        uri: uri.to_owned(),
        sha256: sha256.to_owned(),
    };
    r.clusters
        .push(clusters::wasm_source(&code).unwrap().unwrap());
    r.extensions = vec![listener::plugin(config, &code)];
    r
}

#[test]
fn remote_code_is_fetched_through_its_cluster_and_a_wrong_sha256_is_nacked() {
    with_fleet(Duration::ZERO, |fleet| async move {
        let status = fleet.gateway.status();
        let wasm = std::fs::read(wasm_path(&Module::plugin_wasip1())).unwrap();
        let sha256: String = Sha256::digest(&wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (addr, fetches) = serve_bytes(wasm).await;
        let uri = format!("http://{addr}/fleetgate.wasm");
        let config = fleet.control.config_json().unwrap();
        let good = fleet.control.resources().unwrap();
        let before = status.accepted_version(Kind::Extension);

        fleet
            .control
            .publish_resources(&with_remote_code(good.clone(), &config, &uri, &sha256));
        eventually("the remote plugin accepted", || {
            status.accepted_version(Kind::Extension) != before
        })
        .await;
        assert_eq!(status.nacks.get(), 0, "{:?}", status.last_nack());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let samples = gets(&fleet, 20).await;
        assert!(samples.iter().all(|s| s.ok() && s.decided.is_some()));

        let wrong = "0".repeat(64);
        fleet
            .control
            .publish_resources(&with_remote_code(good, &config, &uri, &wrong));
        eventually("a NACK", || status.nacks.get() == 1).await;
        let nack = status.last_nack().unwrap();
        assert!(nack.contains("does not match the expected"), "{nack}");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let samples = gets(&fleet, 20).await;
        assert!(samples.iter().all(|s| s.ok() && s.decided.is_some()));
    });
}
