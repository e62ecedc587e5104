//! `--log-format json`: every log line is one JSON object with the fields a log collector
//! indexes (time, level, message, target) and the event's own fields flattened beside them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn json_logs_are_one_object_per_line_with_the_event_fields() {
    let fleet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate-controller"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-token",
        ])
        .arg("--fleet")
        .arg(fleet.join("clusters"))
        .arg("--fleet")
        .arg(fleet.join("bad-annotation"))
        .arg("--member")
        .arg(format!("hz-a={}", fleet.join("members/hz-a").display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let published = line.contains("config published");
        lines.push(line);
        if published || lines.len() > 50 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        for field in ["timestamp", "level", "message", "target"] {
            assert!(e[field].is_string(), "{field} missing: {e}");
        }
    }
    let rejected = events
        .iter()
        .find(|e| e["level"] == "WARN" && e["ingress"] == "default/shop-api")
        .unwrap_or_else(|| panic!("no warning for the bad annotation: {lines:?}"));
    assert_eq!(rejected["severity"], "Rejected");
    let published = events.last().unwrap();
    assert_eq!(published["message"], "config published", "{lines:?}");
    assert!(published["revision"]
        .as_str()
        .is_some_and(|r| r.len() == 16));
}

#[test]
fn serve_reports_a_problem_once_not_on_every_re_read() {
    let fleet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate-controller"))
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-token"])
        .args(["--interval-ms", "20", "--fleet"])
        .arg(fleet.join("clusters"))
        .arg("--fleet")
        .arg(fleet.join("bad-annotation"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // About 25 re-reads of unchanged dumps, then stop the server.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let lines: Vec<String> = BufReader::new(stderr).lines().map(Result::unwrap).collect();
    let warnings = lines
        .iter()
        .filter(|l| l.contains("is not an integer"))
        .count();
    assert_eq!(warnings, 1, "{lines:#?}");
}
