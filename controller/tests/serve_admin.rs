//! `serve` answers `/readyz` and `/metrics` on its port, as `run` does on its admin port: the
//! gauges describe the config it serves, xDS streams are counted, and a dump that stops
//! rendering is counted as an error while the last good config stays.

mod xds_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleetgate_controller::serve::{serve_files, XdsServe};
use fleetgate_controller::xds::Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use xds_common::client::{subscribe_all, Client};
use xds_common::*;

/// `GET path` (HTTP/1.0): (status line, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the metric line that starts with `name` (labels included) followed by a space.
fn metric(text: &str, name: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// A scratch copy of the `hz-b` dump.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetgate-serve-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(member_dir("hz-b")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reports_readiness_and_metrics_of_what_it_serves() {
    let hz_b = scratch();
    let args = render_args("active-active", &member_dir("hz-a"), &hz_b);
    let xds = XdsServe {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Auth::default(),
        options: options(file_wasm()),
        wasm: None,
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(serve_files(
        args,
        "127.0.0.1:0".parse().unwrap(),
        None,
        Duration::from_millis(50),
        Some(xds),
        move |addr, xds| tx.send((addr, xds.unwrap())).unwrap(),
    ));
    let (addr, xds_addr) = rx.await.unwrap();
    assert_eq!(get(addr, "/readyz").await.0, "HTTP/1.0 200 OK");

    let (_, config) = get(addr, "/v1/config").await;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let routes = config["routes"].as_array().unwrap().len() as f64;
    let mut c = Client::connect(&format!("http://{xds_addr}"), "gateway-1").await;
    subscribe_all(&mut c).await;
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.0 200 OK");
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
    let (_, text) = get(addr, "/metrics").await;
    let errors = metric(&text, "fleetgate_errors_total{kind=\"render\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{text}");
    let (_, again) = get(addr, "/v1/config").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        config
    );
    let _ = std::fs::remove_dir_all(&hz_b);
}
