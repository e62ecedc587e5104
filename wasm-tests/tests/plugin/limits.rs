//! Budgets and bad input: the `.wasm` gateways pull stays small, and documents that are too
//! big, too many, too deep or too costly are refused (or taken within bounds) without a trap,
//! the last good config staying in force.

use fleetgate_wasm_tests::{LogLevel, VmId};
use serde_json::json;

use super::*;

const WASM_BUDGET_BYTES: u64 = 512 * 1024;

#[test]
fn the_wasip1_plugin_fits_the_512_kib_budget() {
    let path = env!("FLEETGATE_PLUGIN_WASIP1");
    assert!(
        !path.is_empty(),
        "the plugin did not build for wasm32-wasip1"
    );
    let size = std::fs::metadata(path).expect("plugin .wasm").len();
    println!(
        "fleetgate_plugin.wasm (wasm32-wasip1, profile wasm, after scripts/wasm-opt): {size} bytes = {:.1} KiB of {} KiB",
        size as f64 / 1024.0,
        WASM_BUDGET_BYTES / 1024
    );
    assert!(
        size <= WASM_BUDGET_BYTES,
        "{size} bytes is over the {WASM_BUDGET_BYTES} byte budget"
    );
}

fn many_routes(n: usize) -> Value {
    let routes: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("r{i}"), "hosts": [format!("h{i}.example.com")],
                   "backends": [{"cluster": "hz-a", "upstream": up("hz-a")}]})
        })
        .collect();
    json!({"version": 1, "clusters": [{"id": "hz-a"}], "routes": routes})
}

fn deep(n: usize) -> String {
    format!(
        r#"{{"version": 1, "clusters": [{{"id": "hz-a", "zone": {}1{}}}]}}"#,
        "[".repeat(n),
        "]".repeat(n)
    )
}

#[test]
fn oversized_and_hostile_documents_are_refused_and_the_good_config_kept() {
    let good = config(&["hz-b"], json!({}));
    let huge_regex = config(
        &["hz-b"],
        json!({"pins": [{"when": {"header": "x", "match": {"regex": "(a{1000}){1000}"}}, "cluster": "hz-b"}]}),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("more than the 48 MiB", {
            let mut v = good.clone();
            v["revision"] = json!("x".repeat(50 << 20));
            v.to_string().into_bytes()
        }),
        (
            "routes: more than 20000 routes",
            many_routes(100_000).to_string().into_bytes(),
        ),
        (
            "match.regex: invalid regex",
            huge_regex.to_string().into_bytes(),
        ),
        ("clusters[0].zone: invalid type", deep(100_000).into_bytes()),
    ];
    let h = host(&config(&["hz-a"], json!({})));
    for (needle, doc) in cases {
        assert!(!h.configure(doc), "{needle}");
        assert!(
            h.logged(LogLevel::Error, needle),
            "{needle}: {:?}",
            h.logs()
        );
        assert!(!h.poisoned(VmId::FIRST), "{needle}: VM trapped");
        assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-a"), "{needle}");
        h.clear_logs();
    }
}

#[test]
fn ten_thousand_routes_are_taken() {
    let h = host(&config(&["hz-a"], json!({})));
    assert!(
        h.configure(many_routes(10_000).to_string()),
        "{:?}",
        h.logs()
    );
    let s = h.request().authority("h9999.example.com").path("/").send();
    assert_eq!(s.request_header(UPSTREAM_HEADER), Some(up("hz-a")));
    s.respond(200).finish();
}
