//! Config validation: good configs are accepted, bad ones name the JSON path and the reason.

use fleetgate_plugin::config;
use proptest::prelude::*;
use serde_json::{json, Value};

fn good() -> Value {
    json!({
        "version": 1,
        "clusters": [{"id": "a", "zone": "z1"}, {"id": "b", "state": "unknown"}],
        "routes": [{
            "name": "default/shop",
            "hosts": ["shop.example.com", "*.shop.example.com"],
            "paths": [{"type": "Prefix", "path": "/"}, {"type": "Exact", "path": "/healthz"}],
            "mode": "active-standby", "order": ["a", "b"],
            "backends": [{"cluster": "a", "upstream": "ua", "ready": 2}, {"cluster": "b", "upstream": "ub", "ready": 1}],
            "pins": [{"when": {"header": "x-env", "match": {"regex": "gr(a|e)y"}}, "cluster": "b"}],
            "canaries": [{"name": "v2", "weight": 10, "backends": [{"cluster": "b", "upstream": "v2"}]}],
            "mirror": {"upstream": "shadow", "percent": 5.5},
            "sticky": {"cookie": "fg"}
        }]
    })
}

fn reject(mutate: impl Fn(&mut Value)) -> config::ConfigError {
    let mut v = good();
    mutate(&mut v);
    config::parse(v.to_string().as_bytes()).expect_err("config should be rejected")
}

#[test]
fn the_full_example_is_accepted() {
    let c = config::parse(good().to_string().as_bytes()).expect("valid");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].canary_percent, vec![10]);
    assert_eq!(c.routes[0].needed_headers, vec!["x-env", "cookie"]);
}

#[test]
fn config_md_example_is_accepted() {
    let md = include_str!("../CONFIG.md");
    let start = md.find("```json").expect("CONFIG.md has a json example") + 7;
    let end = start + md[start..].find("```").expect("closed block");
    config::parse(&md.as_bytes()[start..end]).unwrap_or_else(|e| panic!("CONFIG.md example: {e}"));
}

#[test]
fn bad_configs_name_the_field_and_the_reason() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Mutation)> = vec![
        (
            "version",
            "unsupported version",
            Box::new(|v| v["version"] = json!(2)),
        ),
        (
            "routes[0].backends[0].weight",
            "invalid type",
            Box::new(|v| v["routes"][0]["backends"][0]["weight"] = json!("ten")),
        ),
        (
            "routes[0].backends[0].weight",
            "invalid value",
            Box::new(|v| v["routes"][0]["backends"][0]["weight"] = json!(-3)),
        ),
        (
            "routes[0].backends",
            "all weights are zero",
            Box::new(|v| {
                v["routes"][0]["backends"][0]["weight"] = json!(0);
                v["routes"][0]["backends"][1]["weight"] = json!(0);
            }),
        ),
        (
            "routes[0].backends",
            "on every backend or on none",
            Box::new(|v| v["routes"][0]["backends"][0]["weight"] = json!(5)),
        ),
        (
            "routes[0].backends[1].cluster",
            "unknown cluster",
            Box::new(|v| v["routes"][0]["backends"][1]["cluster"] = json!("zz")),
        ),
        (
            "routes[0].pins[0].when.match.regex",
            "invalid regex",
            Box::new(|v| {
                v["routes"][0]["pins"][0]["when"]["match"] = json!({"regex": "(unclosed"})
            }),
        ),
        (
            "routes[0].surprise",
            "unknown field",
            Box::new(|v| v["routes"][0]["surprise"] = json!(1)),
        ),
        (
            "routes[0].min_healthy",
            "invalid value",
            Box::new(|v| v["routes"][0]["min_healthy"] = json!(99_999_999_999u64)),
        ),
        (
            "routes[0].failback.hold_seconds",
            "more than one day",
            Box::new(|v| v["routes"][0]["failback"] = json!({"hold_seconds": 4_000_000})),
        ),
        (
            "routes[0].order[1]",
            "unknown cluster",
            Box::new(|v| v["routes"][0]["order"][1] = json!("c")),
        ),
        (
            "routes[0].order",
            "needs an order",
            Box::new(|v| v["routes"][0]["order"] = json!([])),
        ),
        (
            "clusters[1].id",
            "duplicate cluster id",
            Box::new(|v| v["clusters"][1]["id"] = json!("a")),
        ),
        (
            "clusters[0].id",
            "not a cluster id",
            Box::new(|v| v["clusters"][0]["id"] = json!("a=b")),
        ),
        (
            "clusters[1].state",
            "unknown variant",
            Box::new(|v| v["clusters"][1]["state"] = json!("sleepy")),
        ),
        (
            "routes[0].mirror.percent",
            "between 0 and 100",
            Box::new(|v| v["routes"][0]["mirror"]["percent"] = json!(150)),
        ),
        (
            "routes[0].hosts[0]",
            "not a host name",
            Box::new(|v| v["routes"][0]["hosts"][0] = json!("sh*p.example.com")),
        ),
        (
            "routes[0].paths[0].path",
            "must start with '/'",
            Box::new(|v| v["routes"][0]["paths"][0]["path"] = json!("api")),
        ),
        (
            "routes[0].canaries[0]",
            "conditions (when) or a weight",
            Box::new(|v| {
                v["routes"][0]["canaries"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("weight");
            }),
        ),
        (
            "routes[0].pins[0].when",
            "exactly one",
            Box::new(|v| v["routes"][0]["pins"][0]["when"]["cookie"] = json!("c")),
        ),
        (
            "cluster_header",
            "not a valid header name",
            Box::new(|v| v["cluster_header"] = json!("x bad")),
        ),
        (
            "passive_health.failure_threshold",
            "out of range",
            Box::new(|v| v["passive_health"] = json!({"failure_threshold": 0})),
        ),
        (
            "clusters",
            "at least one cluster",
            Box::new(|v| v["clusters"] = json!([])),
        ),
    ];
    for (path, reason, mutate) in cases {
        let err = reject(mutate);
        assert_eq!(err.path, path, "wrong path for {reason:?}: {err}");
        assert!(
            err.reason.contains(reason),
            "reason for {path}: got {:?}, want {reason:?}",
            err.reason
        );
    }
}

#[test]
fn syntax_errors_and_trailing_garbage_are_rejected() {
    for bad in [
        &b"{"[..],
        b"",
        b"null",
        b"[]",
        b"{\"version\": 1,}",
        b"\xff\xfe",
    ] {
        assert!(config::parse(bad).is_err(), "{bad:?}");
    }
    let mut s = good().to_string();
    s.push_str(" {}");
    assert!(config::parse(s.as_bytes())
        .unwrap_err()
        .reason
        .contains("trailing"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = config::parse(&bytes);
    }

    #[test]
    fn mutated_good_configs_never_panic(path in 0usize..40, value in prop_oneof![Just(json!(null)), Just(json!(-1)), Just(json!("")), Just(json!(1e300)), Just(json!([])), Just(json!({}))]) {
        let mut v = good();
        let keys: Vec<String> = v["routes"][0].as_object().unwrap().keys().cloned().collect();
        let k = &keys[path % keys.len()];
        v["routes"][0][k] = value;
        let _ = config::parse(v.to_string().as_bytes());
    }
}

fn regex_pin(re: &str) -> Result<config::Config, config::ConfigError> {
    let mut v = good();
    v["routes"][0]["pins"][0]["when"]["match"] = json!({ "regex": re });
    config::parse(v.to_string().as_bytes())
}

#[test]
fn regexes_match_the_whole_value_as_envoy_does() {
    for (re, yes, no) in [
        (
            "gr(a|e)y",
            &["gray", "grey"][..],
            &["xgray", "grayx", "gr"][..],
        ),
        ("always|v2", &["always", "v2"], &["always2", "xv2", ""]),
        (
            "(?i)beta-[0-9]+",
            &["BETA-12", "beta-0"],
            &["beta-", "beta-1a"],
        ),
        (".*", &["", "anything"], &[]),
    ] {
        let cfg = regex_pin(re).unwrap_or_else(|e| panic!("{re}: {e}"));
        let m = &cfg.routes[0].pins[0].when.matcher;
        for v in yes {
            assert!(m.matches(v), "{re} should match {v:?}");
        }
        for v in no {
            assert!(!m.matches(v), "{re} should not match {v:?}");
        }
    }
}

#[test]
fn hostile_regexes_are_rejected_with_the_path() {
    let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
    for re in [
        // Would escape the anchoring group: `^(?:a)|(b)$`.
        "a)|(b",
        "(unclosed",
        // Compiles to a huge program.
        "(a{1000}){1000}",
        "[a-z]{500}[0-9]{500}",
        deep.as_str(),
        // Look-around and backreferences are not RE2.
        "(a)\\1",
        "(?=a)",
    ] {
        let e = regex_pin(re).expect_err(re);
        assert_eq!(e.path, "routes[0].pins[0].when.match.regex", "{re}");
        assert!(e.reason.starts_with("invalid regex"), "{re}: {e}");
    }
    let long = "a".repeat(1025);
    assert!(regex_pin(&long).unwrap_err().reason.contains("longer than"));
}
