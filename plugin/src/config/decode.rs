//! JSON -> [`ConfigV1`]: the one decoder of the wire format, natively and in wasm.
//!
//! serde_json parses the text into a small tree ([`Json`], objects keep their keys in document
//! order, duplicates included), and hand-written code walks the tree into the wire types,
//! tracking the JSON path as it goes, so every shape error names its path directly. It accepts
//! exactly what `#[derive(Deserialize)]` with `deny_unknown_fields` and the defaults in
//! [`super::wire`] would, and words errors as serde does (`unknown field`, `invalid type`,
//! `invalid value`, `missing field`, `unknown variant`, ...). Derived deserializers, one
//! monomorphization per type and field over serde_json's reader, cost about 80 KB of wasm.

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use std::fmt;

use super::wire::*;
use super::ConfigError;

/// A parsed JSON value. Numbers keep serde_json's split: non-negative integers, negative
/// integers, everything else as `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(if v >= 0 {
            Json::U64(v as u64)
        } else {
            Json::I64(v)
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Json::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
        let mut v = Vec::new();
        while let Some(e) = a.next_entry()? {
            v.push(e);
        }
        Ok(Json::Obj(v))
    }
}

impl Json {
    /// How serde_json words an unexpected value (`integer \`-3\``, `string "x"`, `map`, ...).
    fn unexpected(&self) -> String {
        match self {
            Json::Null => "null".to_string(),
            Json::Bool(b) => format!("boolean `{b}`"),
            Json::U64(n) => format!("integer `{n}`"),
            Json::I64(n) => format!("integer `{n}`"),
            // serde_json's own float formatting (shortest round-trip), not core's.
            Json::F64(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => format!("floating point `{n}`"),
                None => "floating point".to_string(),
            },
            Json::Str(s) => format!("string {s:?}"),
            Json::Arr(_) => "sequence".to_string(),
            Json::Obj(_) => "map".to_string(),
        }
    }
}

/// `ConfigV1` is `Deserialize` through the same decoder (errors carry the JSON path).
impl<'de> Deserialize<'de> for ConfigV1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(d)?;
        config(&json).map_err(D::Error::custom)
    }
}

type R<T> = Result<T, ConfigError>;

// Errors are worded as serde's derive and serde_json word them, but formatted here: serde's
// `Unexpected` formatting drags in core's float printing (20 KB of wasm).

fn invalid_type(v: &Json, path: &str, expected: &str) -> ConfigError {
    let unexpected = v.unexpected();
    ConfigError::new(
        path,
        format!("invalid type: {unexpected}, expected {expected}"),
    )
}

fn invalid_value(path: &str, n: impl fmt::Display, expected: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!("invalid value: integer `{n}`, expected {expected}"),
    )
}

/// serde's `unknown field`/`unknown variant` message.
fn unknown(path: &str, what: &str, name: &str, known: &[&str]) -> ConfigError {
    let mut msg = format!("unknown {what} `{name}`, expected ");
    match known {
        [a] => msg.push_str(&format!("`{a}`")),
        [a, b] => msg.push_str(&format!("`{a}` or `{b}`")),
        _ => {
            msg.push_str("one of ");
            for (i, k) in known.iter().enumerate() {
                if i > 0 {
                    msg.push_str(", ");
                }
                msg.push('`');
                msg.push_str(k);
                msg.push('`');
            }
        }
    }
    ConfigError::new(path, msg)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Decode a whole config.
pub fn config(v: &Json) -> R<ConfigV1> {
    let mut c = ConfigV1 {
        version: 0,
        revision: None,
        cluster_header: default_cluster_header(),
        mirror_header: default_mirror_header(),
        decision_header: None,
        random_seed: None,
        clusters: Vec::new(),
        passive_health: PassiveHealthV1::default(),
        routes: Vec::new(),
        config_source: None,
    };
    const F: &[&str] = &[
        "version",
        "revision",
        "cluster_header",
        "mirror_header",
        "decision_header",
        "random_seed",
        "clusters",
        "passive_health",
        "routes",
        "config_source",
    ];
    object(v, "", "ConfigV1", F, 1 << 0 | 1 << 6, &mut |i, v, p| {
        match i {
            0 => c.version = uint(v, p)?,
            1 => c.revision = opt(v, p, string)?,
            2 => c.cluster_header = string(v, p)?,
            3 => c.mirror_header = string(v, p)?,
            4 => c.decision_header = opt(v, p, string)?,
            5 => c.random_seed = opt(v, p, u64_)?,
            6 => c.clusters = list(v, p, cluster)?,
            7 => c.passive_health = passive(v, p)?,
            8 => c.routes = list(v, p, route)?,
            _ => c.config_source = opt(v, p, source)?,
        }
        Ok(())
    })?;
    Ok(c)
}

fn cluster(v: &Json, path: &str) -> R<ClusterV1> {
    let mut c = ClusterV1 {
        id: String::new(),
        zone: None,
        state: ClusterState::default(),
    };
    const F: &[&str] = &["id", "zone", "state"];
    object(v, path, "ClusterV1", F, 1, &mut |i, v, p| {
        match i {
            0 => c.id = string(v, p)?,
            1 => c.zone = opt(v, p, string)?,
            _ => {
                const V: &[&str] = &["healthy", "degraded", "unknown", "down"];
                c.state = match unit_variant(v, p, V)? {
                    0 => ClusterState::Healthy,
                    1 => ClusterState::Degraded,
                    2 => ClusterState::Unknown,
                    _ => ClusterState::Down,
                }
            }
        }
        Ok(())
    })?;
    Ok(c)
}

fn passive(v: &Json, path: &str) -> R<PassiveHealthV1> {
    let mut h = PassiveHealthV1::default();
    const F: &[&str] = &[
        "enabled",
        "failure_threshold",
        "probation_failure_threshold",
        "success_threshold",
        "base_ejection_seconds",
        "max_ejection_seconds",
        "ramp_seconds",
        "count_5xx",
    ];
    object(v, path, "PassiveHealthV1", F, 0, &mut |i, v, p| {
        match i {
            0 => h.enabled = boolean(v, p)?,
            1 => h.failure_threshold = uint(v, p)?,
            2 => h.probation_failure_threshold = uint(v, p)?,
            3 => h.success_threshold = uint(v, p)?,
            4 => h.base_ejection_seconds = uint(v, p)?,
            5 => h.max_ejection_seconds = uint(v, p)?,
            6 => h.ramp_seconds = uint(v, p)?,
            _ => h.count_5xx = boolean(v, p)?,
        }
        Ok(())
    })?;
    Ok(h)
}

fn route(v: &Json, path: &str) -> R<RouteV1> {
    let mut r = RouteV1 {
        name: String::new(),
        hosts: Vec::new(),
        paths: Vec::new(),
        mode: Mode::default(),
        order: Vec::new(),
        min_healthy: default_min_healthy(),
        failback: FailbackV1::default(),
        backends: Vec::new(),
        pins: Vec::new(),
        route_by_header: None,
        canaries: Vec::new(),
        canary_weight_total: None,
        mirror: None,
        sticky: None,
        when_unavailable: WhenUnavailable::default(),
    };
    const F: &[&str] = &[
        "name",
        "hosts",
        "paths",
        "mode",
        "order",
        "min_healthy",
        "failback",
        "backends",
        "pins",
        "route_by_header",
        "canaries",
        "canary_weight_total",
        "mirror",
        "sticky",
        "when_unavailable",
    ];
    object(v, path, "RouteV1", F, 1 << 0 | 1 << 7, &mut |i, v, p| {
        match i {
            0 => r.name = string(v, p)?,
            1 => r.hosts = list(v, p, string)?,
            2 => r.paths = list(v, p, path_match)?,
            3 => {
                const V: &[&str] = &["active-active", "active-standby"];
                r.mode = match unit_variant(v, p, V)? {
                    0 => Mode::ActiveActive,
                    _ => Mode::ActiveStandby,
                }
            }
            4 => r.order = list(v, p, string)?,
            5 => r.min_healthy = uint(v, p)?,
            6 => r.failback = failback(v, p)?,
            7 => r.backends = list(v, p, backend)?,
            8 => r.pins = list(v, p, pin)?,
            9 => r.route_by_header = opt(v, p, string)?,
            10 => r.canaries = list(v, p, canary)?,
            11 => r.canary_weight_total = opt(v, p, uint)?,
            12 => r.mirror = opt(v, p, mirror)?,
            13 => r.sticky = opt(v, p, sticky)?,
            _ => {
                const V: &[&str] = &["reject", "panic"];
                r.when_unavailable = match unit_variant(v, p, V)? {
                    0 => WhenUnavailable::Reject,
                    _ => WhenUnavailable::Panic,
                }
            }
        }
        Ok(())
    })?;
    Ok(r)
}

fn path_match(v: &Json, path: &str) -> R<PathV1> {
    let mut m = PathV1 {
        kind: PathKind::Prefix,
        path: String::new(),
    };
    object(
        v,
        path,
        "PathV1",
        &["type", "path"],
        0b11,
        &mut |i, v, p| {
            match i {
                0 => {
                    m.kind = match unit_variant(v, p, &["Exact", "Prefix"])? {
                        0 => PathKind::Exact,
                        _ => PathKind::Prefix,
                    }
                }
                _ => m.path = string(v, p)?,
            }
            Ok(())
        },
    )?;
    Ok(m)
}

fn failback(v: &Json, path: &str) -> R<FailbackV1> {
    let mut f = FailbackV1::default();
    const F: &[&str] = &["hold_seconds", "ramp_seconds"];
    object(v, path, "FailbackV1", F, 0, &mut |i, v, p| {
        match i {
            0 => f.hold_seconds = uint(v, p)?,
            _ => f.ramp_seconds = uint(v, p)?,
        }
        Ok(())
    })?;
    Ok(f)
}

fn backend(v: &Json, path: &str) -> R<BackendV1> {
    let mut b = BackendV1 {
        cluster: String::new(),
        upstream: String::new(),
        ready: None,
        weight: None,
    };
    const F: &[&str] = &["cluster", "upstream", "ready", "weight"];
    object(v, path, "BackendV1", F, 0b11, &mut |i, v, p| {
        match i {
            0 => b.cluster = string(v, p)?,
            1 => b.upstream = string(v, p)?,
            2 => b.ready = opt(v, p, uint)?,
            _ => b.weight = opt(v, p, uint)?,
        }
        Ok(())
    })?;
    Ok(b)
}

fn condition(v: &Json, path: &str) -> R<ConditionV1> {
    let mut c = ConditionV1 {
        header: None,
        cookie: None,
        query: None,
        matcher: MatchV1::Always,
    };
    const F: &[&str] = &["header", "cookie", "query", "match"];
    object(v, path, "ConditionV1", F, 1 << 3, &mut |i, v, p| {
        match i {
            0 => c.header = opt(v, p, string)?,
            1 => c.cookie = opt(v, p, string)?,
            2 => c.query = opt(v, p, string)?,
            _ => c.matcher = matcher(v, p)?,
        }
        Ok(())
    })?;
    Ok(c)
}

/// `"always"`, `"present"`, `{"exact": s}`, `{"regex": s}` (serde's external tagging, which also
/// takes `{"always": null}`).
fn matcher(v: &Json, path: &str) -> R<MatchV1> {
    const V: &[&str] = &["always", "present", "exact", "regex"];
    let (i, payload) = variant(v, path, V)?;
    let newtype = |f: fn(String) -> MatchV1| match payload {
        Some(x) => Ok(f(string(x, &child(path, V[i]))?)),
        None => Err(ConfigError::new(
            path,
            "invalid type: unit variant, expected newtype variant",
        )),
    };
    match i {
        0 | 1 => {
            if let Some(x) = payload {
                unit(x, &child(path, V[i]))?;
            }
            Ok(if i == 0 {
                MatchV1::Always
            } else {
                MatchV1::Present
            })
        }
        2 => newtype(MatchV1::Exact),
        _ => newtype(MatchV1::Regex),
    }
}

fn pin(v: &Json, path: &str) -> R<PinV1> {
    let mut pin = PinV1 {
        when: ConditionV1 {
            header: None,
            cookie: None,
            query: None,
            matcher: MatchV1::Always,
        },
        cluster: String::new(),
    };
    object(
        v,
        path,
        "PinV1",
        &["when", "cluster"],
        0b11,
        &mut |i, v, p| {
            match i {
                0 => pin.when = condition(v, p)?,
                _ => pin.cluster = string(v, p)?,
            }
            Ok(())
        },
    )?;
    Ok(pin)
}

fn canary(v: &Json, path: &str) -> R<CanaryV1> {
    let mut c = CanaryV1 {
        name: String::new(),
        when: Vec::new(),
        weight: None,
        backends: Vec::new(),
    };
    const F: &[&str] = &["name", "when", "weight", "backends"];
    object(v, path, "CanaryV1", F, 1 << 0 | 1 << 3, &mut |i, v, p| {
        match i {
            0 => c.name = string(v, p)?,
            1 => c.when = list(v, p, condition)?,
            2 => c.weight = opt(v, p, uint)?,
            _ => c.backends = list(v, p, backend)?,
        }
        Ok(())
    })?;
    Ok(c)
}

fn mirror(v: &Json, path: &str) -> R<MirrorV1> {
    let mut m = MirrorV1 {
        upstream: String::new(),
        percent: default_percent(),
    };
    const F: &[&str] = &["upstream", "percent"];
    object(v, path, "MirrorV1", F, 1, &mut |i, v, p| {
        match i {
            0 => m.upstream = string(v, p)?,
            _ => m.percent = float(v, p)?,
        }
        Ok(())
    })?;
    Ok(m)
}

fn sticky(v: &Json, path: &str) -> R<StickyV1> {
    let mut s = StickyV1 {
        cookie: String::new(),
        max_age_seconds: default_max_age(),
    };
    const F: &[&str] = &["cookie", "max_age_seconds"];
    object(v, path, "StickyV1", F, 1, &mut |i, v, p| {
        match i {
            0 => s.cookie = string(v, p)?,
            _ => s.max_age_seconds = uint(v, p)?,
        }
        Ok(())
    })?;
    Ok(s)
}

fn source(v: &Json, path: &str) -> R<ConfigSourceV1> {
    let mut s = ConfigSourceV1 {
        upstream: String::new(),
        authority: default_source_authority(),
        path: default_source_path(),
        token: None,
        poll_ms: default_poll_ms(),
        wait_seconds: default_wait_seconds(),
    };
    const F: &[&str] = &[
        "upstream",
        "authority",
        "path",
        "token",
        "poll_ms",
        "wait_seconds",
    ];
    object(v, path, "ConfigSourceV1", F, 1, &mut |i, v, p| {
        match i {
            0 => s.upstream = string(v, p)?,
            1 => s.authority = string(v, p)?,
            2 => s.path = string(v, p)?,
            3 => s.token = opt(v, p, string)?,
            4 => s.poll_ms = uint(v, p)?,
            _ => s.wait_seconds = uint(v, p)?,
        }
        Ok(())
    })?;
    Ok(s)
}

/// A struct: calls `field(index into fields, value, path)` for each member in document order.
/// Like serde's derive it takes a map (unknown and duplicate keys rejected) or a sequence of the
/// fields in declaration order; `required` is a bit mask over `fields`.
fn object(
    v: &Json,
    path: &str,
    name: &str,
    fields: &'static [&'static str],
    required: u32,
    field: &mut dyn FnMut(usize, &Json, &str) -> R<()>,
) -> R<()> {
    let mut seen = 0u32;
    match v {
        Json::Obj(members) => {
            for (k, x) in members {
                let p = child(path, k);
                let Some(i) = fields.iter().position(|f| f == k) else {
                    return Err(unknown(&p, "field", k, fields));
                };
                if seen & 1 << i != 0 {
                    return Err(ConfigError::new(p, format!("duplicate field `{k}`")));
                }
                seen |= 1 << i;
                field(i, x, &p)?;
            }
        }
        Json::Arr(items) => {
            for (i, x) in items.iter().enumerate() {
                let Some(f) = fields.get(i) else {
                    return Err(ConfigError::new(index(path, i), "trailing characters"));
                };
                seen |= 1 << i;
                field(i, x, &child(path, f))?;
            }
            if let Some(i) = (0..fields.len()).find(|&i| required & !seen & 1 << i != 0) {
                let n = fields.len();
                let msg = format!("invalid length {i}, expected struct {name} with {n} elements");
                return Err(ConfigError::new(path, msg));
            }
        }
        _ => return Err(invalid_type(v, path, &format!("struct {name}"))),
    }
    match (0..fields.len()).find(|&i| required & !seen & 1 << i != 0) {
        Some(i) => Err(ConfigError::new(
            path,
            format!("missing field `{}`", fields[i]),
        )),
        None => Ok(()),
    }
}

/// An enum variant: `"name"`, or `{"name": payload}`.
fn variant<'a>(
    v: &'a Json,
    path: &str,
    variants: &'static [&'static str],
) -> R<(usize, Option<&'a Json>)> {
    let (name, payload) = match v {
        Json::Str(s) => (s, None),
        Json::Obj(m) if m.len() == 1 => (&m[0].0, Some(&m[0].1)),
        Json::Obj(_) => {
            return Err(ConfigError::new(
                path,
                "invalid value: map, expected map with a single key",
            ))
        }
        _ => return Err(invalid_type(v, path, "string or map")),
    };
    match variants.iter().position(|n| n == name) {
        Some(i) => Ok((i, payload)),
        None => Err(unknown(path, "variant", name, variants)),
    }
}

/// A fieldless enum (`"name"`, or `{"name": null}`): the variant's index.
fn unit_variant(v: &Json, path: &str, variants: &'static [&'static str]) -> R<usize> {
    let (i, payload) = variant(v, path, variants)?;
    if let Some(x) = payload {
        unit(x, &child(path, variants[i]))?;
    }
    Ok(i)
}

fn unit(v: &Json, path: &str) -> R<()> {
    match v {
        Json::Null => Ok(()),
        _ => Err(invalid_type(v, path, "unit")),
    }
}

fn opt<T>(v: &Json, path: &str, f: fn(&Json, &str) -> R<T>) -> R<Option<T>> {
    match v {
        Json::Null => Ok(None),
        _ => f(v, path).map(Some),
    }
}

fn list<T>(v: &Json, path: &str, f: fn(&Json, &str) -> R<T>) -> R<Vec<T>> {
    match v {
        Json::Arr(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| f(x, &index(path, i)))
            .collect(),
        _ => Err(invalid_type(v, path, "a sequence")),
    }
}

fn string(v: &Json, path: &str) -> R<String> {
    match v {
        Json::Str(s) => Ok(s.clone()),
        _ => Err(invalid_type(v, path, "a string")),
    }
}

fn boolean(v: &Json, path: &str) -> R<bool> {
    match v {
        Json::Bool(b) => Ok(*b),
        _ => Err(invalid_type(v, path, "a boolean")),
    }
}

fn integer(v: &Json, path: &str, max: u64, expected: &str) -> R<u64> {
    match *v {
        Json::U64(n) if n <= max => Ok(n),
        Json::U64(n) => Err(invalid_value(path, n, expected)),
        Json::I64(n) => Err(invalid_value(path, n, expected)),
        _ => Err(invalid_type(v, path, expected)),
    }
}

fn uint(v: &Json, path: &str) -> R<u32> {
    integer(v, path, u32::MAX.into(), "u32").map(|n| n as u32)
}

fn u64_(v: &Json, path: &str) -> R<u64> {
    integer(v, path, u64::MAX, "u64")
}

fn float(v: &Json, path: &str) -> R<f64> {
    match *v {
        Json::U64(n) => Ok(n as f64),
        Json::I64(n) => Ok(n as f64),
        Json::F64(f) => Ok(f),
        _ => Err(invalid_type(v, path, "f64")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_wire;
    use super::*;

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
                    ],
                    weight: Some(30),
                    backends,
                }],
                canary_weight_total: Some(1000),
                mirror: Some(MirrorV1 {
                    upstream: "shadow".into(),
                    percent: 12.5,
                }),
                sticky: Some(StickyV1 {
                    cookie: "fg".into(),
                    max_age_seconds: 60,
                }),
                when_unavailable: WhenUnavailable::Panic,
            }],
            config_source: Some(ConfigSourceV1 {
                upstream: "ctl".into(),
                authority: "ctl.local".into(),
                path: "/v2".into(),
                token: Some("t".into()),
                poll_ms: 500,
                wait_seconds: 5,
            }),
        }
    }

    fn round_trip(c: &ConfigV1) {
        let json = serde_json::to_value(c).expect("serializes").to_string();
        assert_eq!(&parse_wire(json.as_bytes()).expect("decodes"), c, "{json}");
    }

    #[test]
    fn serialized_configs_decode_back() {
        round_trip(&rich());
        let md = include_str!("../../CONFIG.md");
        let start = md.find("```json").expect("CONFIG.md has a json example") + 7;
        let end = start + md[start..].find("```").expect("closed block");
        let example = parse_wire(&md.as_bytes()[start..end]).expect("CONFIG.md example");
        round_trip(&example);
        // And through serde, as the controller's tools may read it.
        let json = serde_json::to_value(rich()).unwrap().to_string();
        let c: ConfigV1 = serde_json::from_str(&json).expect("Deserialize");
        assert_eq!(c, rich());
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
        assert_eq!(r.min_healthy, default_min_healthy());
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
    fn shapes_serde_accepts_are_accepted() {
        let c = parse_wire(
            br#"{"version": 1, "clusters": [["a", null, {"down": null}]], "routes": [{"name": "r",
                "backends": [{"cluster": "a", "upstream": "u"}], "failback": [3],
                "pins": [{"cluster": "a", "when": {"query": "q", "match": {"present": null}}}]}]}"#,
        )
        .unwrap();
        assert_eq!(c.clusters[0].state, ClusterState::Down);
        assert_eq!(c.routes[0].failback.hold_seconds, 3);
        assert_eq!(c.routes[0].failback.ramp_seconds, 30);
        assert_eq!(c.routes[0].pins[0].when.matcher, MatchV1::Present);
    }

    #[test]
    fn errors_are_worded_as_serde_words_them() {
        let base = |extra: &str| format!(r#"{{"version": 1, "clusters": [{{"id": "a"}}]{extra}}}"#);
        for (json, path, reason) in [
            (base(r#", "bogus": 1"#), "bogus", "unknown field `bogus`, expected one of `version`, `revision`, "),
            (base(r#", "version": 1"#), "version", "duplicate field `version`"),
            (r#"{"clusters": []}"#.to_string(), "", "missing field `version`"),
            (base(r#", "random_seed": -1"#), "random_seed", "invalid value: integer `-1`, expected u64"),
            (base(r#", "random_seed": 1.5"#), "random_seed", "invalid type: floating point `1.5`, expected u64"),
            (base(r#", "revision": 7"#), "revision", "invalid type: integer `7`, expected a string"),
            (base(r#", "routes": {}"#), "routes", "invalid type: map, expected a sequence"),
            (base(r#", "passive_health": [true, "x"]"#), "passive_health.failure_threshold", "invalid type: string \"x\", expected u32"),
            (base(r#", "passive_health": {"enabled": 1}"#), "passive_health.enabled", "invalid type: integer `1`, expected a boolean"),
            (base(r#", "config_source": null, "routes": [null]"#), "routes[0]", "invalid type: null, expected struct RouteV1"),
            (r#"{"version": 1, "clusters": [{"id": "a", "state": "sleepy"}]}"#.to_string(), "clusters[0].state", "unknown variant `sleepy`, expected one of `healthy`, `degraded`, `unknown`, `down`"),
            (r#"{"version": 1, "clusters": [{"id": "a", "state": {"down": 1}}]}"#.to_string(), "clusters[0].state.down", "invalid type: integer `1`, expected unit"),
            (r#"[1]"#.to_string(), "", "invalid length 6, expected struct ConfigV1 with 10 elements"),
            (base(r#", "routes": [{"name": "r", "backends": [], "failback": {"x": 1}}]"#), "routes[0].failback.x", "unknown field `x`, expected `hold_seconds` or `ramp_seconds`"),
            (base(r#", "routes": [{"name": "r", "backends": [], "pins": [{"cluster": "a", "when": {"header": "h", "match": "exact"}}]}]"#), "routes[0].pins[0].when.match", "invalid type: unit variant, expected newtype variant"),
            (base(r#", "routes": [{"name": "r", "backends": [], "pins": [{"cluster": "a", "when": {"header": "h", "match": {"regex": ["x"]}}}]}]"#), "routes[0].pins[0].when.match.regex", "invalid type: sequence, expected a string"),
        ] {
            let e = parse_wire(json.as_bytes()).expect_err(&json);
            assert_eq!(e.path, path, "{json}: {e}");
            assert!(e.reason.starts_with(reason), "{json}: {:?}", e.reason);
        }
    }
}
