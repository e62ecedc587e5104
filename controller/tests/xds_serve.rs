//! `serve --xds-listen`: the dumps on disk change, the subscribed client sees the change; the
//! served `.wasm`; readiness and metrics of what it serves.

mod xds_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetgate_controller::serve::{serve_files, XdsServe};
use fleetgate_controller::xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use fleetgate_controller::xds::{Auth, ENDPOINT, EXTENSION};
use tokio::sync::oneshot;
use xds_common::client::{decode, subscribe_all, Client};
use xds_common::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `serve` on free loopback ports: (config endpoint, ADS server).
async fn start(
    args: fleetgate_controller::cli::RenderArgs,
    token: Option<String>,
    interval: Duration,
    xds: XdsServe,
) -> (SocketAddr, SocketAddr) {
    let (tx, rx) = oneshot::channel();
    let listen = "127.0.0.1:0".parse().unwrap();
    tokio::spawn(serve_files(
        args,
        listen,
        token,
        interval,
        Some(xds),
        move |http, xds| tx.send((http, xds.unwrap())).unwrap(),
    ));
    rx.await.unwrap()
}

/// A scratch copy of the `hz-b` dump that the test can rewrite.
fn scratch(test: &str) -> PathBuf {
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("fleetgate-xds-serve-{pid}-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&member_dir("hz-b"), &dir.join("hz-b"));
    dir
}

/// `serve` of the active-active fixture re-read every 50 ms, `hz-b` from a scratch copy:
/// (scratch directory, `hz-b` directory, config endpoint, ADS server).
async fn serve_scratch(test: &str) -> (PathBuf, PathBuf, SocketAddr, SocketAddr) {
    let dir = scratch(test);
    let hz_b = dir.join("hz-b");
    let args = render_args("active-active", &member_dir("hz-a"), &hz_b);
    let xds = XdsServe {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Auth::default(),
        options: options(file_wasm()),
        wasm: None,
    };
    let (http, ads) = start(args, None, Duration::from_millis(50), xds).await;
    (dir, hz_b, http, ads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_scaled_to_zero_on_disk_reaches_the_subscribed_client_within_a_second() {
    let (dir, hz_b, _, addr) = serve_scratch("scaled").await;
    let mut c = Client::connect(&format!("http://{addr}"), "gateway-1").await;
    let held = subscribe_all(&mut c).await;

    copy_dir(&member_dir("hz-b-scaled-to-zero"), &hz_b);
    let started = Instant::now();
    let eds = c.expect(ENDPOINT).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let hz_b_direct = decode::<ClusterLoadAssignment>(&eds)
        .into_iter()
        .find(|c| c.cluster_name == "direct|80|hz-b|shop.default.svc.cluster.local")
        .unwrap();
    assert!(hz_b_direct
        .endpoints
        .iter()
        .all(|l| l.lb_endpoints.is_empty()));
    c.ack(&eds, &held.eds_names).await;
    // Ready counts are in the plugin config: it follows by ECDS; clusters, listener and routes
    // do not change.
    let ecds = c.expect(EXTENSION).await;
    c.ack(&ecds, &["fleetgate".to_string()]).await;
    assert!(c.recv(Duration::from_millis(300)).await.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET path` on `addr`: the response body (HTTP/1.0, so the server closes the connection).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    (head, raw[split + 4..].to_vec())
}

#[tokio::test]
async fn the_served_wasm_is_the_one_whose_sha256_the_plugin_config_names() {
    use fleetgate_controller::serve::WASM_PATH;
    use fleetgate_controller::xds::pb::envoy::config::core::v3::TypedExtensionConfig;
    use fleetgate_controller::xds::{WasmCode, EXTENSION};
    use sha2::{Digest, Sha256};

    let bytes = b"\0asm\x01\0\0\0 not really a plugin".to_vec();
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let wasm = WasmCode::Remote {
        uri: format!("http://fleetgate-controller:8080{WASM_PATH}"),
        sha256: sha256.clone(),
    };
    let xds = XdsServe {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Auth::default(),
        options: options(wasm),
        wasm: Some(bytes.clone().into()),
    };
    let args = render_args("active-active", &member_dir("hz-a"), &member_dir("hz-b"));
    let token = Some("s3cret".into());
    let (http, xds_addr) = start(args, token, Duration::from_secs(60), xds).await;
    let (head, body) = http_get(http, WASM_PATH).await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert_eq!(body, bytes);
    let (head, _) = http_get(http, "/v1/config").await;
    assert!(
        head.contains(" 401"),
        "the config still needs the token: {head}"
    );

    let mut c = Client::connect(&format!("http://{xds_addr}"), "gateway-1").await;
    let name = vec!["fleetgate".to_string()];
    c.request(EXTENSION, &name, None).await;
    let ecds = c.expect(EXTENSION).await;
    let json = check_strict(&decode::<TypedExtensionConfig>(&ecds)[0]).unwrap();
    let remote = &json["typedConfig"]["config"]["vmConfig"]["code"]["remote"];
    assert_eq!(remote["sha256"], sha256.as_str());
    assert!(remote["httpUri"]["uri"]
        .as_str()
        .unwrap()
        .ends_with(WASM_PATH));
}

/// The value of the metric line that starts with `name` (labels included) followed by a space.
fn metric(text: &str, name: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reports_readiness_and_metrics_of_what_it_serves() {
    let (dir, hz_b, addr, xds_addr) = serve_scratch("metrics").await;
    assert!(http_get(addr, "/readyz")
        .await
        .0
        .starts_with("HTTP/1.0 200"));

    let config: serde_json::Value =
        serde_json::from_slice(&http_get(addr, "/v1/config").await.1).unwrap();
    let routes = config["routes"].as_array().unwrap().len() as f64;
    let mut c = Client::connect(&format!("http://{xds_addr}"), "gateway-1").await;
    subscribe_all(&mut c).await;
    let (head, text) = http_get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let text = String::from_utf8(text).unwrap();
    assert_eq!(
        metric(&text, "fleetgate_config_routes"),
        Some(routes),
        "{text}"
    );
    assert_eq!(metric(&text, "fleetgate_xds_streams"), Some(1.0), "{text}");
    // Members per state, as the served config says.
    for state in ["healthy", "degraded", "unknown", "down"] {
        let clusters = config["clusters"].as_array().unwrap();
        let n = clusters.iter().filter(|c| c["state"] == state).count() as f64;
        let gauge = metric(&text, &format!("fleetgate_members{{state=\"{state}\"}}"));
        assert_eq!(gauge, Some(n), "{state}: {text}");
    }
    assert_eq!(
        metric(&text, "fleetgate_errors_total{kind=\"render\"}"),
        None
    );

    // A dump that no longer parses: counted, and the last good config is still served.
    std::fs::write(hz_b.join("broken.yaml"), "kind: [unclosed\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = String::from_utf8(http_get(addr, "/metrics").await.1).unwrap();
    let errors = metric(&text, "fleetgate_errors_total{kind=\"render\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{text}");
    let again = http_get(addr, "/v1/config").await.1;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&again).unwrap(),
        config
    );
    let _ = std::fs::remove_dir_all(&dir);
}
