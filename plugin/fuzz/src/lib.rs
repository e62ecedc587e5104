//! What the fuzz targets run, one function per target, each taking the raw fuzz input. Also
//! compiled into the plugin's `corpus_replay` test (`#[path]`), so CI replays the committed
//! corpus on the stable toolchain through exactly these functions.
//!
//! Each function asserts invariants; a panic is a finding.

use arbitrary::{Result, Unstructured};
use fleetgate_plugin::config::{self, Config, PassiveHealthV1, WhenUnavailable};
use fleetgate_plugin::decide::{select, Decision, Local, Reason};
use fleetgate_plugin::effects::on_request;
use fleetgate_plugin::failover::route_availability;
use fleetgate_plugin::health::{PassiveState, Transition};
use fleetgate_plugin::request::SimpleRequest;
use serde_json::{json, Value};

/// `config::parse` on arbitrary bytes: never panics; what decodes re-encodes and decodes to a
/// config that validates the same way.
pub fn config_bytes(data: &[u8]) {
    let valid = config::parse(data).is_ok();
    if let Ok(wire) = config::parse_wire(data) {
        let again = serde_json::to_vec(&wire).expect("wire types serialize");
        let reparsed = config::parse(&again);
        assert_eq!(reparsed.is_ok(), valid, "{:?}", reparsed.err());
    }
}

/// Structured JSON: a valid config with arbitrary edits at arbitrary places.
pub fn config_json(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(doc) = edited_config(&mut u) else {
        return;
    };
    config_bytes(doc.to_string().as_bytes());
}

fn edited_config(u: &mut Unstructured) -> Result<Value> {
    let mut doc = gen_config(u)?;
    for _ in 0..u.int_in_range(0..=6)? {
        let value = gen_value(u, 2)?;
        let target = pick_node(u, &mut doc)?;
        *target = value;
    }
    Ok(doc)
}

/// A random node of the document (descending a random number of levels).
fn pick_node<'a>(u: &mut Unstructured, mut v: &'a mut Value) -> Result<&'a mut Value> {
    for _ in 0..u.int_in_range(0..=5)? {
        let n = match &*v {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if n == 0 {
            break;
        }
        let i = u.choose_index(n)?;
        v = match v {
            Value::Object(m) => m.values_mut().nth(i).expect("in range"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!("has children"),
        };
    }
    Ok(v)
}

fn gen_value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    const WORDS: &[&str] = &[
        "",
        "c0",
        "c1",
        "x",
        "always",
        "present",
        "absent",
        "exact",
        "regex",
        "Prefix",
        "Exact",
        "/",
        "/api",
        "active-standby",
        "down",
        "unknown",
        "panic",
        "(a|b)*c",
        "*.example.com",
    ];
    Ok(match u.int_in_range(0..=8)? {
        0 => Value::Null,
        1 => json!(bool::arbitrary_from(u)?),
        2 => json!(u.int_in_range(0u32..=3)?),
        3 => json!(u64::arbitrary_from(u)?),
        4 => json!(i64::arbitrary_from(u)?),
        5 => json!(f64::arbitrary_from(u)?),
        6 => json!(WORDS[u.choose_index(WORDS.len())?]),
        7 if depth > 0 => Value::Array(vec![gen_value(u, depth - 1)?; u.int_in_range(0..=2)?]),
        8 if depth > 0 => {
            let k = WORDS[u.choose_index(WORDS.len())?];
            json!({ k: gen_value(u, depth - 1)? })
        }
        _ => json!(String::arbitrary_from(u)?),
    })
}

/// `arbitrary` without importing the trait everywhere.
trait ArbitraryFrom: Sized {
    fn arbitrary_from(u: &mut Unstructured) -> Result<Self>;
}

impl<T: for<'a> arbitrary::Arbitrary<'a>> ArbitraryFrom for T {
    fn arbitrary_from(u: &mut Unstructured) -> Result<Self> {
        u.arbitrary()
    }
}

const CLUSTERS: [&str; 4] = ["c0", "c1", "c2", "c3"];

/// A small config using every feature, usually valid.
fn gen_config(u: &mut Unstructured) -> Result<Value> {
    let n = u.int_in_range(1..=4)?;
    let states = ["healthy", "degraded", "unknown", "down"];
    let clusters: Vec<Value> = CLUSTERS[..n]
        .iter()
        .map(|id| Ok(json!({"id": id, "state": states[u.choose_index(4)?]})))
        .collect::<Result<_>>()?;
    let routes: Vec<Value> = (0..u.int_in_range(1..=3)?)
        .map(|i| gen_route(u, i, n))
        .collect::<Result<_>>()?;
    let mut doc = json!({"version": 1, "clusters": clusters, "routes": routes,
        "decision_header": "x-decision"});
    if u.arbitrary()? {
        doc["passive_health"] = json!({"enabled": u.arbitrary::<bool>()?,
            "failure_threshold": u.int_in_range(1..=3)?, "ramp_seconds": u.int_in_range(0..=5)?});
    }
    Ok(doc)
}

fn gen_route(u: &mut Unstructured, i: usize, clusters: usize) -> Result<Value> {
    let hosts = [
        json!([]),
        json!(["a.example.com"]),
        json!(["*.example.com", "b.example.com"]),
    ];
    let paths = [
        json!([]),
        json!([{"type": "Prefix", "path": "/api"}]),
        json!([{"type": "Exact", "path": "/x"}, {"type": "Prefix", "path": format!("/r{i}")}]),
    ];
    let backends = gen_backends(u, clusters, "b")?;
    let mut r = json!({"name": format!("r{i}"), "hosts": hosts[u.choose_index(3)?],
        "paths": paths[u.choose_index(3)?], "backends": backends,
        "min_healthy": u.int_in_range(0..=2)?,
        "failback": {"hold_seconds": u.int_in_range(0..=3)?, "ramp_seconds": u.int_in_range(0..=3)?},
        "when_unavailable": if u.arbitrary()? { "panic" } else { "reject" }});
    let ids: Vec<Value> = r["backends"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["cluster"].clone())
        .collect();
    if u.arbitrary()? {
        r["mode"] = json!("active-standby");
        let k = u.int_in_range(1..=ids.len())?;
        r["order"] = json!(ids[..k]);
    }
    r["pins"] = Value::Array(
        (0..u.int_in_range(0..=2)?)
            .map(|_| {
                Ok(json!({"when": gen_condition(u)?, "cluster": ids[u.choose_index(ids.len())?]}))
            })
            .collect::<Result<_>>()?,
    );
    if u.arbitrary()? {
        r["route_by_header"] = json!("x-c");
    }
    r["canaries"] = Value::Array(
        (0..u.int_in_range(0..=2)?)
            .map(|j| gen_canary(u, j, clusters))
            .collect::<Result<_>>()?,
    );
    if u.arbitrary()? {
        r["fallback"] = json!({"name": "ns/default", "backends": gen_backends(u, clusters, "f")?});
    }
    if u.arbitrary()? {
        r["sticky"] = json!({"cookie": "fg"});
    }
    if u.arbitrary()? {
        r["mirror"] = json!({"upstream": "shadow", "percent": u.int_in_range(0..=100)?});
    }
    if u.arbitrary()? {
        gen_gateway_api(u, &mut r)?;
    }
    Ok(r)
}

/// The Gateway API fields: method and tests, suffix wildcards, regex paths, header edits and
/// one of rewrite, redirect or direct response (sometimes with no backends left).
fn gen_gateway_api(u: &mut Unstructured, r: &mut Value) -> Result<()> {
    if u.arbitrary()? {
        r["method"] = json!(["GET", "POST"][u.choose_index(2)?]);
    }
    r["when"] = Value::Array(
        (0..u.int_in_range(0..=2)?)
            .map(|_| gen_condition(u))
            .collect::<Result<_>>()?,
    );
    if u.arbitrary()? {
        r["wildcard"] = json!("suffix");
    }
    if u.arbitrary()? {
        r["paths"] = json!([{"type": "Regex", "path": "/api/v[0-9]+.*"}]);
    }
    let edit = || {
        json!({"set": [{"name": "x-s", "value": "1"}],
        "add": [{"name": "x-a", "value": "2"}], "remove": ["x-h"]})
    };
    if u.arbitrary()? {
        r["request_headers"] = edit();
    }
    if u.arbitrary()? {
        r["response_headers"] = edit();
    }
    let path = [
        json!({"prefix": "/v2"}),
        json!({"prefix": "/"}),
        json!({"full": "/f"}),
    ];
    match u.int_in_range(0..=3)? {
        0 => r["rewrite"] = json!({"hostname": "rw.example.com", "path": path[u.choose_index(3)?]}),
        1 => {
            let status = [301, 302, 303, 307, 308][u.choose_index(5)?];
            r["redirect"] = json!({"status": status, "path": path[u.choose_index(3)?]});
            if u.arbitrary()? {
                r["redirect"]["scheme"] = json!("https");
                r["redirect"]["port"] = json!(u.int_in_range(1..=9000)?);
            }
        }
        2 => {
            let status = [200, 500, 503][u.choose_index(3)?];
            r["direct"] = json!({"status": status, "body": "d"});
        }
        _ => {}
    }
    if (r.get("redirect").is_some() || r.get("direct").is_some()) && u.arbitrary()? {
        r["backends"] = json!([]);
    }
    if let Some(c) = r["canaries"].as_array_mut().and_then(|c| c.first_mut()) {
        if u.arbitrary()? {
            c["direct"] = json!({"status": 500});
            c["backends"] = json!([]);
        }
    }
    Ok(())
}

fn gen_canary(u: &mut Unstructured, j: usize, clusters: usize) -> Result<Value> {
    let mut c =
        json!({"name": format!("v{j}"), "backends": gen_backends(u, clusters, &format!("v{j}"))?});
    let when: Vec<Value> = (0..u.int_in_range(0..=2)?)
        .map(|_| gen_condition(u))
        .collect::<Result<_>>()?;
    if when.is_empty() || u.arbitrary()? {
        c["weight"] = json!(u.int_in_range(0..=60)?);
    }
    c["when"] = Value::Array(when);
    Ok(c)
}

/// A non-empty subset of the clusters, weights on all or none.
fn gen_backends(u: &mut Unstructured, clusters: usize, prefix: &str) -> Result<Value> {
    let weighted: bool = u.arbitrary()?;
    let mut out = Vec::new();
    for (k, id) in CLUSTERS[..clusters].iter().enumerate() {
        if k > 0 && !u.arbitrary::<bool>()? {
            continue;
        }
        let mut b = json!({"cluster": id, "upstream": format!("{prefix}-{id}")});
        if u.arbitrary()? {
            b["ready"] = json!(u.int_in_range(0..=3)?);
        }
        if weighted {
            b["weight"] = json!(u.int_in_range(0..=5)?);
        }
        out.push(b);
    }
    Ok(Value::Array(out))
}

fn gen_condition(u: &mut Unstructured) -> Result<Value> {
    let mut c = match u.int_in_range(0..=2)? {
        0 => json!({"header": "x-h"}),
        1 => json!({"cookie": "ck"}),
        _ => json!({"query": "q"}),
    };
    c["match"] = match u.int_in_range(0..=4)? {
        0 => json!("always"),
        1 => json!("present"),
        2 => json!("absent"),
        3 => json!({ "exact": *u.choose(&["", "1", "always"])? }),
        _ => json!({ "regex": *u.choose(&["(a|b)+", ".*", "v[0-9]", "(?i)X"])? }),
    };
    Ok(c)
}

/// The per-request decision on a generated config, with arbitrary requests and passive states.
pub fn decision(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(doc) = gen_config(&mut u) else { return };
    let Ok(cfg) = config::parse(doc.to_string().as_bytes()) else {
        return;
    };
    let Ok(states) = (0..cfg.upstreams.len())
        .map(|_| u.arbitrary::<(bool, u8, u8)>())
        .collect::<Result<Vec<_>>>()
    else {
        return;
    };
    let now = 1_000_000;
    let passive = |up: usize| match states.get(up) {
        Some(&(true, _, _)) => PassiveState::ejected_until(now + 1),
        Some(&(false, probation, _)) if probation % 4 == 0 => PassiveState {
            probation: true,
            ejected_until_ms: now - 2_000,
            ..PassiveState::default()
        },
        _ => PassiveState::default(),
    };
    while let Ok(req) = gen_request(&mut u) {
        let seed = u.arbitrary().unwrap_or(0);
        let mut rng = fastrand::Rng::with_seed(seed);
        check_decision(&cfg, &req, &passive, now, &mut rng);
        if u.is_empty() {
            break;
        }
    }
}

fn gen_request(u: &mut Unstructured) -> Result<SimpleRequest> {
    let authorities = [
        "a.example.com",
        "x.example.com:8080",
        "b.example.com",
        "",
        "A.EXAMPLE.COM",
    ];
    let paths = [
        "/",
        "/api/v1?q=a",
        "/x",
        "/r1/?ck=1&q=",
        "/apix",
        "",
        "?q=v1",
    ];
    let mut authority = authorities[u.choose_index(authorities.len())?].to_string();
    let mut path = paths[u.choose_index(paths.len())?].to_string();
    if u.arbitrary()? {
        authority = u.arbitrary()?;
    }
    if u.arbitrary()? {
        path.push_str(u.arbitrary()?);
    }
    let mut req = SimpleRequest::new(&authority, &path);
    for (name, v) in [
        (":method", ["GET", "POST", "get"]),
        (":scheme", ["http", "https", ""]),
    ] {
        if u.arbitrary()? {
            req.headers
                .insert(name.into(), v[u.choose_index(3)?].into());
        }
    }
    for name in ["x-h", "x-c", "cookie"] {
        if u.arbitrary()? {
            let v: String = match u.int_in_range(0..=3)? {
                0 => ["always", "c1", "ck=always; fg=c2", "fg=c0"][u.choose_index(4)?].into(),
                _ => u.arbitrary()?,
            };
            req.headers.insert(name.into(), v);
        }
    }
    Ok(req)
}

/// A decision the plugin answers itself (a redirect, a direct response): it says what the
/// route asks, and its reply is well formed. A routed request's rewrite keeps a path. `true`
/// = answered locally.
fn check_local(cfg: &Config, d: &Decision, req: &SimpleRequest) -> bool {
    let route = &cfg.routes[d.route];
    let fx = on_request(cfg, Some(d), req, &[]);
    let Some(local) = d.local else {
        if let Some((_, p)) = fx.set_headers.iter().find(|(k, _)| k == ":path") {
            assert!(p.starts_with('/'), "rewritten path {p:?}");
        }
        return false;
    };
    assert!(d.target.is_none(), "{d:?}");
    let reply = fx.local_reply.expect("a local answer has a reply");
    match local {
        Local::Redirect => {
            let r = route.filters.redirect.as_ref().expect("a redirect route");
            assert_eq!(reply.status, u32::from(r.status));
            assert!(reply
                .headers
                .iter()
                .any(|(k, v)| k == "location" && !v.is_empty()));
        }
        Local::Direct(None) => {
            let direct = route.filters.direct.as_ref().expect("a direct route");
            assert_eq!(reply.status, u32::from(direct.status));
        }
        Local::Direct(Some(c)) => {
            let direct = route.canary_direct.get(c).cloned().flatten();
            assert_eq!(Some(reply.status), direct.map(|d| u32::from(d.status)));
        }
    }
    true
}

/// Invariants of one decision against the plugin's own availability rule.
fn check_decision(
    cfg: &Config,
    req: &SimpleRequest,
    passive: &dyn Fn(usize) -> PassiveState,
    now: u64,
    rng: &mut fastrand::Rng,
) {
    let Some(d) = select(cfg, req, passive, now, rng) else {
        return;
    };
    let route = &cfg.routes[d.route];
    if check_local(cfg, &d, req) {
        return;
    }
    let avail = route_availability(cfg, d.route, &|u| passive(u).is_ejected(now)).expect("route");
    if d.mirror.is_some() {
        assert!(d.target.is_some() && route.mirror.is_some());
    }
    let Some(t) = d.target else {
        assert_eq!(route.when_unavailable, WhenUnavailable::Reject);
        assert!(!avail.served(), "503 while something is usable: {avail:?}");
        return;
    };
    assert!(route.upstreams().any(|u| u == t.upstream), "{t:?}");
    assert!(t.cluster < cfg.clusters.len());
    match t.reason {
        Reason::Panic => assert!(!avail.served(), "panic while usable: {avail:?}"),
        Reason::Fallback => {
            assert_eq!(
                avail.usable_clusters().count(),
                0,
                "fallback while base usable"
            );
            assert!(avail
                .fallback
                .iter()
                .any(|b| b.usable && b.upstream == t.upstream));
        }
        Reason::Canary => assert!(!passive(t.upstream).is_ejected(now)),
        _ => assert!(
            avail
                .base
                .iter()
                .any(|b| b.usable && b.upstream == t.upstream),
            "{t:?} not usable: {avail:?}"
        ),
    }
    if t.set_sticky {
        assert!(route.sticky.is_some());
    }
}

/// The passive-health state machine under arbitrary outcomes and clock jumps.
pub fn passive_health(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(p) = gen_passive(&mut u) else { return };
    let mut s = PassiveState::default();
    let mut now: u64 = 1_000_000;
    while let Ok((failed, jump)) = u.arbitrary::<(bool, i16)>() {
        // Jumps back (clock adjustments) as well as forward, up to ~12 days either way.
        now = now.saturating_add_signed(i64::from(jump) * i64::from(jump.unsigned_abs()));
        let before = s;
        let t = s.observe(failed, now, &p);
        check_passive(&p, &before, &s, t, failed, now);
        assert_eq!(PassiveState::decode(&s.encode()), s);
        if u.is_empty() {
            break;
        }
    }
}

fn gen_passive(u: &mut Unstructured) -> Result<PassiveHealthV1> {
    let base = u.int_in_range(1..=600)?;
    Ok(PassiveHealthV1 {
        enabled: u.ratio(7, 8)?,
        failure_threshold: u.int_in_range(1..=8)?,
        probation_failure_threshold: u.int_in_range(1..=4)?,
        success_threshold: u.int_in_range(1..=8)?,
        base_ejection_seconds: base,
        max_ejection_seconds: u.int_in_range(base..=86_400)?,
        ramp_seconds: u.int_in_range(0..=120)?,
        count_5xx: u.arbitrary()?,
    })
}

fn check_passive(
    p: &PassiveHealthV1,
    before: &PassiveState,
    s: &PassiveState,
    t: Transition,
    failed: bool,
    now: u64,
) {
    let f = s.factor(now, p);
    assert!((0.0..=1.0).contains(&f), "factor {f}");
    if !s.probation {
        assert!(
            f == 1.0 || s.is_ejected(now),
            "healthy but held at {f}: {s:?}"
        );
    }
    match t {
        Transition::Ejected { for_ms } => {
            assert!(failed && p.enabled);
            let (base, max) = (
                u64::from(p.base_ejection_seconds),
                u64::from(p.max_ejection_seconds),
            );
            assert!((base * 1000..=max * 1000).contains(&for_ms), "{for_ms} ms");
            assert!(s.is_ejected(now) && s.probation && f == 0.0);
            assert_eq!(s.ejected_until_ms, now + for_ms);
        }
        Transition::Recovered => {
            assert!(!failed && !s.probation && !s.is_ejected(now));
            assert_eq!(s.consecutive_failures, 0);
        }
        Transition::None => assert_eq!(before, s, "no transition, yet the state moved"),
        Transition::Updated => assert_ne!(before, s),
    }
    if !p.enabled || before.is_ejected(now) {
        assert_eq!(
            t,
            Transition::None,
            "disabled or ejected upstreams ignore outcomes"
        );
    }
}
