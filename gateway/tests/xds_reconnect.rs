//! The controller restarts (its ADS server goes away, then comes back on the same address with
//! a newer state): the gateway keeps serving its last good state while it has no control
//! plane, reconnects by itself, and applies what the new server sends, as Envoy does with a
//! restarted management server. Bounded: a few hundred sequential requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_controller::xds::{AdsServer, Auth, Snapshot, XdsMetrics};
use fleetgate_local_fleet::control::ControlPlane;
use fleetgate_local_fleet::fleet::wasm_path;
use fleetgate_local_fleet::load::{sequential_gets as gets, served_by, Sample};
use fleetgate_local_fleet::member::Member;
use fleetgate_local_fleet::timed::{runtime, serial};
use fleetgate_local_gateway::xds::{XdsGateway, XdsGatewayConfig};
use fleetgate_wasm_tests::Module;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An ADS server serving `snapshot` on `listener` until the returned sender says stop.
fn ads_server(listener: TcpListener, snapshot: Snapshot) -> (watch::Sender<bool>, JoinHandle<()>) {
    let addr = listener.local_addr().unwrap();
    let (_publisher, snapshots) = watch::channel(Some(Arc::new(snapshot)));
    let (stop, stopped) = watch::channel(false);
    let auth = Auth::new(addr, None, false).unwrap();
    let server = AdsServer::new(snapshots, auth, XdsMetrics::default()).with_shutdown(stopped);
    let task = tokio::spawn(async move {
        let _publisher = _publisher;
        server.serve(listener).await.unwrap();
    });
    (stop, task)
}

fn failed(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| !s.ok()).count()
}

#[test]
fn the_gateway_serves_through_a_controller_restart_and_takes_the_new_state() {
    let _serial = serial();
    runtime().block_on(async {
        let hz_a = Member::start("hz-a", 2, Duration::ZERO).await.unwrap();
        let hz_b = Member::start("hz-b", 2, Duration::ZERO).await.unwrap();
        let members = [("hz-a", hz_a.addrs()), ("hz-b", hz_b.addrs())];
        let wasm = wasm_path(&Module::plugin_wasip1());
        let control = ControlPlane::new("active-active", &members, None, &wasm).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ads = listener.local_addr().unwrap();
        let first = Snapshot::new(&control.resources().unwrap());
        let (stop, server) = ads_server(listener, first);
        let config = XdsGatewayConfig::new(ads, "gateway-restart-test");
        let gateway = tokio::task::spawn_blocking(move || XdsGateway::start(config))
            .await
            .unwrap()
            .unwrap();
        let before = gets(gateway.addr(), 100).await;
        assert_eq!(failed(&before), 0);
        assert!(served_by(&before, "hz-a") > 10 && served_by(&before, "hz-b") > 10);
        assert_eq!(gateway.status().streams.get(), 1);

        // The controller goes away: the stream ends, the gateway serves on what it has.
        stop.send(true).unwrap();
        server.await.unwrap();
        let alone = gets(gateway.addr(), 100).await;
        assert_eq!(failed(&alone), 0, "served without a control plane");
        assert!(served_by(&alone, "hz-b") > 10);

        // It comes back on the same address, knowing hz-b has scaled to zero.
        control.set_ready("hz-b", 0).unwrap();
        let listener = TcpListener::bind(ads).await.unwrap();
        let second = Snapshot::new(&control.resources().unwrap());
        let (_stop, _server) = ads_server(listener, second);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = gets(gateway.addr(), 20).await;
            if served_by(&probe, "hz-b") == 0 && failed(&probe) == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the new state never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(gateway.status().streams.get(), 2, "one reconnect");
        let after = gets(gateway.addr(), 100).await;
        assert_eq!((failed(&after), served_by(&after, "hz-a")), (0, 100));
        gateway.shutdown().unwrap();
    });
}
