//! Bad configs on the real `.wasm`: each is refused with a log line naming the field, the VM
//! survives, and the good config stays in force.

use fleetgate_wasm_tests::{Host, LogLevel, Module, Target};
use serde_json::json;

use super::*;

fn bad_configs() -> Vec<(&'static str, String)> {
    let good = config(&["hz-a", "hz-b"], json!({}));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    vec![
        ("EOF while parsing", "{\"version\": 1,".to_string()),
        ("expected value", "\u{0}\u{1}garbage".to_string()),
        ("EOF while parsing a value", String::new()),
        (
            "routes[0].surprise: unknown field",
            with(&|v| v["routes"][0]["surprise"] = json!(true)),
        ),
        (
            "version: unsupported version 9",
            with(&|v| v["version"] = json!(9)),
        ),
        (
            "routes[0].backends[0].ready: invalid type",
            with(&|v| v["routes"][0]["backends"][0]["ready"] = json!("three")),
        ),
        (
            "routes[0].backends[1].weight: invalid value",
            with(&|v| {
                v["routes"][0]["backends"][0]["weight"] = json!(1);
                v["routes"][0]["backends"][1]["weight"] = json!(-5);
            }),
        ),
        (
            "routes[0].backends: all weights are zero",
            with(&|v| {
                v["routes"][0]["backends"][0]["weight"] = json!(0);
                v["routes"][0]["backends"][1]["weight"] = json!(0);
            }),
        ),
        (
            "routes[0].backends[1].cluster: unknown cluster",
            with(&|v| v["routes"][0]["backends"][1]["cluster"] = json!("hz-z")),
        ),
        (
            "routes[0].pins[0].when.match.regex: invalid regex",
            with(&|v| {
                v["routes"][0]["pins"] =
                    json!([{"when": {"header": "x", "match": {"regex": "a(b"}}, "cluster": "hz-a"}])
            }),
        ),
        (
            "routes[0].backends[0].weight: 4294967295 is larger",
            with(&|v| {
                v["routes"][0]["backends"][0]["weight"] = json!(4294967295u64);
                v["routes"][0]["backends"][1]["weight"] = json!(1);
            }),
        ),
        (
            "routes[0].min_healthy: invalid type",
            with(&|v| v["routes"][0]["min_healthy"] = json!(1e40)),
        ),
        (
            "routes[0].order",
            with(&|v| v["routes"][0]["mode"] = json!("active-standby")),
        ),
        (
            "clusters[1].id: duplicate cluster id",
            with(&|v| v["clusters"][1]["id"] = json!("hz-a")),
        ),
        (
            "routes[0].mirror.percent",
            with(&|v| v["routes"][0]["mirror"] = json!({"upstream": "m", "percent": -1})),
        ),
        (
            "routes[0].hosts[0]: ",
            with(&|v| v["routes"][0]["hosts"] = json!(["bad host"])),
        ),
        (
            "passive_health.max_ejection_seconds",
            with(&|v| {
                v["passive_health"] =
                    json!({"base_ejection_seconds": 60, "max_ejection_seconds": 5})
            }),
        ),
        (
            "routes[0].failback.ramp_seconds: ",
            with(&|v| v["routes"][0]["failback"] = json!({"ramp_seconds": 100000000})),
        ),
        (
            "cluster_header",
            with(&|v| v["cluster_header"] = json!(":authority")),
        ),
    ]
}

#[test]
fn at_least_fifteen_bad_configs_are_rejected_cleanly_at_start() {
    let module = Module::plugin_wasip1();
    let cases = bad_configs();
    assert!(cases.len() >= 15);
    for (needle, cfg) in cases {
        let h = Host::builder(&module)
            .config(cfg.clone())
            .build()
            .expect("VM starts");
        assert!(!h.configured(), "accepted bad config {needle}: {cfg}");
        assert!(
            h.logged(LogLevel::Error, "config rejected from plugin configuration"),
            "{needle}: {:?}",
            h.logs()
        );
        assert!(
            h.logged(LogLevel::Error, needle),
            "log should name {needle:?}: {:?}",
            h.logs()
        );
        assert_eq!(h.metric("fleetgate_config_rejections_total"), Some(1));
        assert!(
            !h.poisoned(fleetgate_wasm_tests::VmId::FIRST),
            "{needle}: VM trapped"
        );
    }
}

#[test]
fn a_bad_update_never_replaces_the_good_config() {
    for target in Target::ALL {
        let h = host_on(target, &config(&["hz-a"], json!({})));
        for (needle, cfg) in bad_configs() {
            assert!(!h.configure(cfg), "{needle}");
            assert_eq!(
                route_once(&h, &[]).as_deref(),
                Some("hz-a"),
                "{needle} on {target:?}"
            );
        }
        // A good update still works afterwards.
        assert!(h.configure(config(&["hz-b"], json!({})).to_string()));
        assert_eq!(route_once(&h, &[]).as_deref(), Some("hz-b"));
    }
}
