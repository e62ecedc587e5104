//! The real plugin `.wasm`, in the local gateway's workers, pulls its config from a real
//! `fleetgate-controller serve` process on 127.0.0.1 and picks up a change within one second:
//! a ready-count change arrives as a state document, without a config parse.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fleetgate_local_gateway::upstreams::Upstreams;
use fleetgate_local_gateway::{Gateway, GatewayConfig, GatewayLog};
use fleetgate_wasm_tests::Module;

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Wait for a log line containing `needle` from `worker`; returns it.
fn wait_log(
    rx: &mpsc::Receiver<GatewayLog>,
    worker: usize,
    needle: &str,
    within: Duration,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.worker == worker && l.message.contains(needle) => return l.message,
            Ok(_) => {}
            Err(_) => panic!("worker {worker} never logged {needle:?} within {within:?}"),
        }
    }
}

/// The revision of the first state both workers apply (`None` if they differ or time out).
fn states_on_both(rx: &mpsc::Receiver<GatewayLog>) -> Option<String> {
    let mut seen: [Option<String>; 2] = [None, None];
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.iter().any(Option::is_none) {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
        if l.message.contains("state accepted from") {
            seen[l.worker].get_or_insert(revision_of(&l.message));
        }
    }
    let [a, b] = seen;
    a.filter(|a| Some(a) == b.as_ref())
}

fn revision_of(line: &str) -> String {
    let at = line.find("revision ").expect("a revision in the line") + "revision ".len();
    line[at..]
        .split([',', ')'])
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_plugin_pulls_a_change_from_the_controller_process_within_a_second() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
    let dir = std::env::temp_dir().join(format!("fleetgate-pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&examples.join("clusters"), &dir.join("fleet"));
    copy_dir(&examples.join("active-active"), &dir.join("fleet"));
    copy_dir(&examples.join("members/hz-a"), &dir.join("hz-a"));
    copy_dir(&examples.join("members/hz-b"), &dir.join("hz-b"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate-controller"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "s3cret",
            "--interval-ms",
            "50",
        ])
        .arg("--fleet")
        .arg(dir.join("fleet"))
        .arg("--member")
        .arg(format!("hz-a={}", dir.join("hz-a").display()))
        .arg("--member")
        .arg(format!("hz-b={}", dir.join("hz-b").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("controller starts");
    let stdout = child.stdout.take().unwrap();
    let controller = Controller(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .parse()
        .unwrap();

    let upstreams = Upstreams::new();
    upstreams.set_cluster("fleetgate-controller", vec![addr]);
    let boot = serde_json::json!({
        "version": 1,
        "clusters": [{"id": "hz-a"}, {"id": "hz-b"}],
        "config_source": {"upstream": "fleetgate-controller", "token": "s3cret", "poll_ms": 100, "wait_seconds": 20},
    });
    let (tx, rx) = mpsc::channel();
    let mut config = GatewayConfig::new(Module::plugin_wasip1(), boot.to_string(), upstreams);
    config.log_sink = Some(tx);
    let gateway = Gateway::start(config).expect("gateway starts");

    // Both workers run the controller's first config (one pulls, the other adopts it).
    let first = wait_log(&rx, 0, "config accepted from", Duration::from_secs(10));
    let first = if first.contains("plugin configuration") {
        wait_log(&rx, 0, "config accepted from", Duration::from_secs(10))
    } else {
        first
    };
    assert!(first.contains("from controller") || first.contains("from shared data"));
    // Then both run the state of those routes.
    let s1 = states_on_both(&rx).expect("both workers apply the first state");

    // hz-b scales to zero: its EndpointSlice dump changes under the running controller.
    let changed_at = Instant::now();
    copy_dir(
        &examples.join("members/hz-b-scaled-to-zero"),
        &dir.join("hz-b"),
    );
    let mut seen = [false, false];
    let deadline = Duration::from_secs(5);
    while !(seen[0] && seen[1]) {
        let left = deadline.saturating_sub(changed_at.elapsed());
        let l = rx
            .recv_timeout(left)
            .expect("both workers adopt the change");
        assert!(
            !l.message.contains("config accepted from"),
            "a ready-count change re-sent the routes: {}",
            l.message
        );
        if l.message.contains("state accepted from")
            && !l.message.contains(&format!("revision {s1},"))
        {
            seen[l.worker] = true;
        }
    }
    let took = changed_at.elapsed();
    eprintln!(
        "controller process change picked up by both workers after {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    gateway.shutdown().unwrap();
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
}
