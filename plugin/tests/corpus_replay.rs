//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the very functions the
//! cargo-fuzz targets call, on the stable toolchain: every past finding stays a regression test
//! and CI needs no nightly.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn config_bytes_corpus() {
    replay("config_bytes", harness::config_bytes);
}

#[test]
fn config_json_corpus() {
    replay("config_json", harness::config_json);
}

#[test]
fn decision_corpus() {
    replay("decision", harness::decision);
}

#[test]
fn passive_health_corpus() {
    replay("passive_health", harness::passive_health);
}
