//! The wire format: serde reads what the controller writes, absent fields take the defaults,
//! and shape errors name the JSON path.

use fleetgate_plugin::config::*;

fn rich() -> ConfigV1 {
    let cond = |matcher| ConditionV1 {
        header: Some("x-env".into()),
        cookie: None,
        query: None,
        matcher,
    };
    let backends = vec![
        BackendV1 {
            cluster: "a".into(),
            upstream: "ua".into(),
            ready: Some(3),
            weight: Some(0),
        },
        BackendV1 {
            cluster: "b".into(),
            upstream: "ub".into(),
            ready: None,
            weight: Some(7),
        },
    ];
    ConfigV1 {
        version: 1,
        revision: Some("r1".into()),
        cluster_header: "x-up".into(),
        mirror_header: "x-mirror".into(),
        decision_header: Some("x-decision".into()),
        random_seed: Some(u64::MAX),
        clusters: vec![
            ClusterV1 {
                id: "a".into(),
                zone: Some("z1".into()),
                state: ClusterState::Degraded,
            },
            ClusterV1 {
                id: "b".into(),
                zone: None,
                state: ClusterState::Down,
            },
            ClusterV1 {
                id: "c".into(),
                zone: None,
                state: ClusterState::Unknown,
            },
        ],
        passive_health: PassiveHealthV1 {
            enabled: false,
            failure_threshold: 1,
            probation_failure_threshold: 3,
            success_threshold: 4,
            base_ejection_seconds: 6,
            max_ejection_seconds: 7,
            ramp_seconds: 8,
            count_5xx: false,
        },
        routes: vec![RouteV1 {
            name: "ns/shop".into(),
            hosts: vec!["shop.example.com".into(), "*.example.com".into()],
            paths: vec![
                PathV1 {
                    kind: PathKind::Exact,
                    path: "/x".into(),
                },
                PathV1 {
                    kind: PathKind::Prefix,
                    path: "/".into(),
                },
            ],
            mode: Mode::ActiveStandby,
            order: vec!["b".into(), "a".into()],
            min_healthy: 2,
            failback: FailbackV1 {
                hold_seconds: 1,
                ramp_seconds: 2,
            },
            backends: backends.clone(),
            pins: vec![PinV1 {
                when: cond(MatchV1::Regex("gr(a|e)y".into())),
                cluster: "b".into(),
            }],
            route_by_header: Some("x-cluster".into()),
            canaries: vec![CanaryV1 {
                name: "v2".into(),
                when: vec![
                    cond(MatchV1::Always),
                    cond(MatchV1::Present),
                    cond(MatchV1::Exact("yes".into())),
                    cond(MatchV1::Absent),
                ],
                weight: Some(30),
                backends,
                direct: None,
            }],
            canary_weight_total: Some(1000),
            fallback: Some(FallbackV1 {
                name: "ns/default-backend".into(),
                backends: vec![BackendV1 {
                    cluster: "c".into(),
                    upstream: "uc".into(),
                    ready: None,
                    weight: None,
                }],
            }),
            mirror: Some(MirrorV1 {
                upstream: "shadow".into(),
                percent: 12.5,
            }),
            sticky: Some(StickyV1 {
                cookie: "fg".into(),
                max_age_seconds: 60,
            }),
            when_unavailable: WhenUnavailable::Panic,
            wildcard: Wildcard::Label,
            method: None,
            when: vec![],
            request_headers: None,
            response_headers: None,
            rewrite: None,
            redirect: None,
            direct: None,
        }],
        config_source: Some(ConfigSourceV1 {
            upstream: "ctl".into(),
            authority: "ctl.local".into(),
            path: "/v2".into(),
            state_path: "/v2/state".into(),
            token: Some("t".into()),
            poll_ms: 500,
            wait_seconds: 5,
        }),
    }
}

fn round_trip(c: &ConfigV1) {
    let json = serde_json::to_string(c).expect("serializes");
    assert_eq!(&parse_wire(json.as_bytes()).expect("decodes"), c, "{json}");
}

#[test]
fn serialized_configs_decode_back() {
    round_trip(&rich());
    let md = include_str!("../CONFIG.md");
    let start = md.find("```json").expect("CONFIG.md has a json example") + 7;
    let end = start + md[start..].find("```").expect("closed block");
    round_trip(&parse_wire(&md.as_bytes()[start..end]).expect("CONFIG.md example"));
}

#[test]
fn absent_fields_take_the_defaults() {
    let c = parse_wire(
        br#"{"version": 1, "clusters": [{"id": "a"}], "routes": [{"name": "r",
            "backends": [{"cluster": "a", "upstream": "u"}], "mirror": {"upstream": "m"},
            "sticky": {"cookie": "c"}}], "config_source": {"upstream": "ctl"},
            "revision": null, "passive_health": {"enabled": false}}"#,
    )
    .unwrap();
    assert_eq!(c.cluster_header, default_cluster_header());
    assert_eq!(c.mirror_header, default_mirror_header());
    assert_eq!(c.revision, None);
    assert_eq!(c.clusters[0].state, ClusterState::Healthy);
    let passive = PassiveHealthV1 {
        enabled: false,
        ..PassiveHealthV1::default()
    };
    assert_eq!(c.passive_health, passive);
    let r = &c.routes[0];
    assert_eq!(
        (r.mode, r.when_unavailable),
        (Mode::ActiveActive, WhenUnavailable::Reject)
    );
    assert_eq!(r.min_healthy, 1);
    assert_eq!(r.failback, FailbackV1::default());
    assert_eq!(r.mirror.as_ref().unwrap().percent, 100.0);
    assert_eq!(r.sticky.as_ref().unwrap().max_age_seconds, 3600);
    let s = c.config_source.unwrap();
    assert_eq!(
        (s.authority.as_str(), s.path.as_str()),
        ("fleetgate-controller", "/v1/config")
    );
    assert_eq!((s.poll_ms, s.wait_seconds), (200, 20));
}

#[test]
fn shape_errors_name_the_json_path() {
    let base = |extra: &str| format!(r#"{{"version": 1, "clusters": [{{"id": "a"}}]{extra}}}"#);
    let route = |extra: &str| {
        base(&format!(
            r#", "routes": [{{"name": "r", "backends": [{{"cluster": "a", "upstream": "u"}}]{extra}}}]"#
        ))
    };
    for (json, path, reason) in [
        (base(r#", "bogus": 1"#), "bogus", "unknown field `bogus`"),
        (base(r#", "version": 1"#), "", "duplicate field `version`"),
        (
            r#"{"clusters": []}"#.to_string(),
            "",
            "missing field `version`",
        ),
        (
            base(r#", "random_seed": -1"#),
            "random_seed",
            "invalid value: integer `-1`, expected u64",
        ),
        (
            base(r#", "revision": 7"#),
            "revision",
            "invalid type: integer `7`, expected a string",
        ),
        (
            base(r#", "routes": {}"#),
            "routes",
            "invalid type: map, expected a sequence",
        ),
        (
            base(r#", "passive_health": {"enabled": 1}"#),
            "passive_health.enabled",
            "invalid type: integer `1`, expected a boolean",
        ),
        (
            r#"{"version": 1, "clusters": [{"id": "a", "state": "sleepy"}]}"#.to_string(),
            "clusters[0].state",
            "unknown variant `sleepy`",
        ),
        (
            route(r#", "failback": {"x": 1}"#),
            "routes[0].failback.x",
            "unknown field `x`, expected `hold_seconds` or `ramp_seconds`",
        ),
        (
            base(
                r#", "routes": [{"name": "r", "backends": [{"cluster": "a", "upstream": "u", "weight": "ten"}]}]"#,
            ),
            "routes[0].backends[0].weight",
            "invalid type: string \"ten\", expected u32",
        ),
        (
            route(
                r#", "pins": [{"cluster": "a", "when": {"header": "h", "match": {"regex": ["x"]}}}]"#,
            ),
            "routes[0].pins[0].when.match.regex",
            "invalid type: sequence, expected a string",
        ),
        // Syntax errors, too, are located where the reader was.
        (
            route(r#", "mirror": {"upstream": "m", "percent": 5x}"#),
            "routes[0].mirror",
            "expected `,` or `}`",
        ),
        (
            route(r#", "mirror": {"upstream": "m", "percent": x}"#),
            "routes[0].mirror.percent",
            "expected value",
        ),
        (format!("{} {{}}", base("")), "", "trailing characters"),
    ] {
        let e = parse_wire(json.as_bytes()).expect_err(&json);
        assert_eq!(e.path, path, "{json}: {e}");
        assert!(e.reason.starts_with(reason), "{json}: {:?}", e.reason);
        assert!(!e.reason.contains(" at line "), "{:?}", e.reason);
    }
}

#[test]
fn nesting_100000_deep_is_rejected_not_overflowed() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let json = format!(
            r#"{{"version": 1, "clusters": [{{"id": "a", "zone": {}1{}}}]}}"#,
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let e = parse(json.as_bytes()).expect_err("too deep");
        assert_eq!(e.path, "clusters[0].zone");
        assert!(e.reason.starts_with("invalid type"), "{e}");
    }
    // Where the schema takes a list, serde_json's recursion limit stops the descent.
    let deep = format!(
        r#"{{"version": 1, "clusters": {}{{"id": "a"}}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse(deep.as_bytes()).expect_err("too deep");
    assert!(
        e.reason.contains("invalid type") || e.reason.contains("recursion limit"),
        "{e}"
    );
}
