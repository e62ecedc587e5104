//! Ingress annotations: the Higress/MSE/nginx compatibility set (canary, mirror,
//! default-backend, subset-labels) and fleetgate's own `fleetgate.io/*` keys, parsed into typed
//! values. Every error names the annotation and says why it was rejected.
//!
//! Precedence for compatibility keys follows Higress' ASAP order: `nginx.ingress.kubernetes.io/`,
//! then `higress.io/`, then `mse.ingress.kubernetes.io/`; the first prefix present wins (even if
//! its value is invalid). Values are trimmed; an empty value counts as absent.

use std::collections::BTreeMap;

use fleetgate_plugin::config::WhenUnavailable;
use thiserror::Error;

/// Compatibility prefixes, highest precedence first.
pub const COMPAT_PREFIXES: [&str; 3] = [
    "nginx.ingress.kubernetes.io/",
    "higress.io/",
    "mse.ingress.kubernetes.io/",
];
/// The MSE prefix, the only one MSE-exclusive keys accept.
pub const MSE: &str = "mse.ingress.kubernetes.io/";
/// Compatibility keys fleetgate implements (any of the three prefixes).
pub const SUPPORTED_COMPAT: [&str; 13] = [
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "subset-labels",
    "mirror-target-service",
    "mirror-target-fqdn",
    "mirror-target-fqdn-port",
    "mirror-percentage",
    "default-backend",
];
/// MSE-exclusive keys fleetgate implements (`mse.` prefix only).
pub const SUPPORTED_MSE: [&str; 4] = [
    "canary-by-query",
    "canary-by-query-value",
    "canary-by-query-pattern",
    "canary-by-cookie-value",
];
/// `fleetgate.io/` keys.
pub const SUPPORTED_OURS: [&str; 10] = [
    "mode",
    "cluster-weights",
    "cluster-order",
    "route-by-header",
    "cluster",
    "min-healthy",
    "failback-hold-seconds",
    "failback-ramp-seconds",
    "sticky-cookie",
    "when-unavailable",
];
/// Our own prefix.
pub const OURS: &str = "fleetgate.io/";
/// The Istio label MSE's `subset-labels` uses to select one member cluster.
pub const ISTIO_CLUSTER_LABEL: &str = "topology.istio.io/cluster";

/// An annotation that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("annotation {annotation}: {reason}")]
pub struct AnnotationError {
    /// Full annotation key as written on the Ingress.
    pub annotation: String,
    pub reason: String,
}

impl AnnotationError {
    fn new(annotation: &str, reason: impl Into<String>) -> Self {
        AnnotationError {
            annotation: annotation.to_string(),
            reason: reason.into(),
        }
    }
}

/// `fleetgate.io/mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeAnno {
    ActiveActive,
    ActiveStandby,
}

/// Where a canary condition looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanarySource {
    Header(String),
    Cookie(String),
    Query(String),
}

/// What value a canary condition accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryValue {
    /// Exactly `always` (the nginx/Higress convention).
    Always,
    /// `-value`: full-match regex `always|<value>` (Higress; `a|b` accepts several values).
    OneOf(String),
    /// `-pattern`: full-match regex `.*<pattern>.*`.
    Pattern(String),
    /// MSE `canary-by-cookie-value`: exactly this value.
    Exact(String),
}

/// One condition of a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRule {
    pub source: CanarySource,
    pub value: CanaryValue,
}

/// How a canary Ingress selects its traffic (Higress `CanaryKind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryMatch {
    /// Header and/or query rules (any one matching), else a cookie rule. Such a canary never
    /// applies a weight.
    When(Vec<CanaryRule>),
    /// `canary-weight` (and `canary-weight-total`).
    Weight { weight: u32, total: Option<u32> },
}

/// Where mirrored requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorTarget {
    /// `mirror-target-service`: a Service of the fleet.
    Service(ServiceRef),
    /// `mirror-target-fqdn` + `mirror-target-fqdn-port` (default 80): any host.
    Fqdn { host: String, port: u16 },
}

/// A Service reference `[namespace/]name[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: Option<u16>,
}

/// Everything fleetgate reads from one Ingress's annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngressAnnotations {
    /// `Some` when `canary` is true.
    pub canary: Option<CanaryMatch>,
    pub mode: Option<ModeAnno>,
    /// `fleetgate.io/cluster-weights`, in the order written.
    pub cluster_weights: Option<Vec<(String, u32)>>,
    pub cluster_order: Option<Vec<String>>,
    pub route_by_header: Option<String>,
    /// `fleetgate.io/cluster`, or MSE `subset-labels: topology.istio.io/cluster <id>`.
    pub cluster: Option<String>,
    pub min_healthy: Option<u32>,
    pub failback_hold_seconds: Option<u32>,
    pub failback_ramp_seconds: Option<u32>,
    /// `fleetgate.io/sticky-cookie`: cookie name and optional max age.
    pub sticky: Option<(String, Option<u32>)>,
    /// `fleetgate.io/when-unavailable`: `reject` (503) or `panic` (spread over all backends).
    pub when_unavailable: Option<WhenUnavailable>,
    pub mirror: Option<(MirrorTarget, f64)>,
    pub default_backend: Option<ServiceRef>,
}

/// Read access to one Ingress's annotations with prefix precedence.
struct Annos<'a> {
    map: &'a BTreeMap<String, String>,
}

impl<'a> Annos<'a> {
    /// A compatibility key: (full key, trimmed value) of the first prefix present.
    fn compat(&self, key: &str) -> Option<(String, String)> {
        COMPAT_PREFIXES.iter().find_map(|p| {
            let full = format!("{p}{key}");
            let v = self.map.get(&full)?;
            let v = trim_lines(v);
            (!v.is_empty()).then_some((full, v))
        })
    }
    /// An MSE-only key: only the `mse.ingress.kubernetes.io/` prefix counts.
    fn mse(&self, key: &str) -> Option<(String, String)> {
        let full = format!("{MSE}{key}");
        let v = trim_lines(self.map.get(&full)?);
        (!v.is_empty()).then_some((full, v))
    }
    fn ours(&self, key: &str) -> Option<(String, String)> {
        let full = format!("{OURS}{key}");
        let v = trim_lines(self.map.get(&full)?);
        (!v.is_empty()).then_some((full, v))
    }
}

/// Higress trims each line of a value.
fn trim_lines(v: &str) -> String {
    v.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse the annotations of one Ingress in `namespace` (for Service references).
pub fn parse(
    namespace: &str,
    map: &BTreeMap<String, String>,
) -> Result<IngressAnnotations, AnnotationError> {
    let a = Annos { map };
    let mut out = IngressAnnotations::default();

    if let Some((k, v)) = a.compat("canary") {
        if parse_bool(&k, &v)? {
            out.canary = Some(parse_canary(&a)?);
        }
    }
    if let Some((k, v)) = a.ours("mode") {
        out.mode = Some(match v.as_str() {
            "active-active" => ModeAnno::ActiveActive,
            "active-standby" => ModeAnno::ActiveStandby,
            _ => {
                return Err(AnnotationError::new(
                    &k,
                    format!("{v:?} is not active-active or active-standby"),
                ))
            }
        });
    }
    if let Some((k, v)) = a.ours("cluster-weights") {
        out.cluster_weights = Some(parse_weights(&k, &v)?);
    }
    if let Some((k, v)) = a.ours("cluster-order") {
        let mut order: Vec<String> = Vec::new();
        for id in v.split(',').map(str::trim) {
            check_cluster_id(&k, id)?;
            if order.iter().any(|o| o == id) {
                return Err(AnnotationError::new(
                    &k,
                    format!("cluster {id:?} is listed twice"),
                ));
            }
            order.push(id.to_string());
        }
        out.cluster_order = Some(order);
    }
    if let Some((k, v)) = a.ours("route-by-header") {
        out.route_by_header = Some(header_name(&k, &v)?);
    }
    if let Some((k, v)) = a.ours("cluster") {
        check_cluster_id(&k, &v)?;
        out.cluster = Some(v);
    }
    if let Some((k, v)) = a.compat("subset-labels") {
        let id = parse_subset_labels(&k, &v)?;
        match &out.cluster {
            Some(c) if *c != id => {
                return Err(AnnotationError::new(
                    &k,
                    format!("names cluster {id:?} but fleetgate.io/cluster names {c:?}"),
                ))
            }
            _ => out.cluster = Some(id),
        }
    }
    if let Some((k, v)) = a.ours("min-healthy") {
        out.min_healthy = Some(parse_u32(&k, &v, 0, 1_000_000)?);
    }
    if let Some((k, v)) = a.ours("failback-hold-seconds") {
        out.failback_hold_seconds = Some(parse_u32(&k, &v, 0, 86_400)?);
    }
    if let Some((k, v)) = a.ours("failback-ramp-seconds") {
        out.failback_ramp_seconds = Some(parse_u32(&k, &v, 0, 86_400)?);
    }
    if let Some((k, v)) = a.ours("sticky-cookie") {
        out.sticky = Some(parse_sticky(&k, &v)?);
    }
    if let Some((k, v)) = a.ours("when-unavailable") {
        out.when_unavailable = Some(match v.as_str() {
            "reject" => WhenUnavailable::Reject,
            "panic" => WhenUnavailable::Panic,
            _ => {
                return Err(AnnotationError::new(
                    &k,
                    format!("{v:?} is not reject or panic"),
                ))
            }
        });
    }
    out.mirror = parse_mirror(&a, namespace)?;
    if let Some((k, v)) = a.compat("default-backend") {
        out.default_backend = Some(parse_service_ref(&k, &v, namespace, false)?);
    }
    Ok(out)
}

/// Higress/MSE canary parse order: header and query rules (MSE: "header or query > cookie >
/// weight"), else cookie, else weight. A canary with conditions never applies its weight.
fn parse_canary(a: &Annos<'_>) -> Result<CanaryMatch, AnnotationError> {
    let mut rules = Vec::new();
    if let Some((k, header)) = a.compat("canary-by-header") {
        let value = value_rule(
            a.compat("canary-by-header-value"),
            a.compat("canary-by-header-pattern"),
        );
        rules.push(CanaryRule {
            source: CanarySource::Header(header_name(&k, &header)?),
            value,
        });
    }
    if let Some((k, name)) = a.mse("canary-by-query") {
        if name.contains(['&', '=', '#']) || name.chars().any(char::is_whitespace) {
            return Err(AnnotationError::new(
                &k,
                format!("{name:?} is not a query parameter name"),
            ));
        }
        let value = value_rule(
            a.mse("canary-by-query-value"),
            a.mse("canary-by-query-pattern"),
        );
        rules.push(CanaryRule {
            source: CanarySource::Query(name),
            value,
        });
    }
    if !rules.is_empty() {
        return Ok(CanaryMatch::When(rules));
    }
    if let Some((k, cookie)) = a.compat("canary-by-cookie") {
        if !cookie.bytes().all(is_token_byte) {
            return Err(AnnotationError::new(
                &k,
                format!("{cookie:?} is not a valid cookie name"),
            ));
        }
        let value = match a.mse("canary-by-cookie-value") {
            Some((_, v)) => CanaryValue::Exact(v),
            None => CanaryValue::Always,
        };
        return Ok(CanaryMatch::When(vec![CanaryRule {
            source: CanarySource::Cookie(cookie),
            value,
        }]));
    }
    let weight = match a.compat("canary-weight") {
        Some((k, v)) => {
            let w = parse_int(&k, &v)?;
            if w < 0 {
                return Err(AnnotationError::new(&k, format!("{w} is negative")));
            }
            // A weight above the total is Higress' "the canary takes everything".
            u32::try_from(w)
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| AnnotationError::new(&k, format!("{w} is over {MAX_WEIGHT}")))?
        }
        None => 0,
    };
    // Higress: the total applies only when it is greater than zero.
    let total = match a.compat("canary-weight-total") {
        Some((k, v)) => {
            let t = parse_int(&k, &v)?;
            if t > i64::from(MAX_WEIGHT) {
                return Err(AnnotationError::new(
                    &k,
                    format!("{t} is over {MAX_WEIGHT}"),
                ));
            }
            (t > 0).then_some(t as u32)
        }
        None => None,
    };
    Ok(CanaryMatch::Weight { weight, total })
}

/// Largest weight or total the plugin takes.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// `-value` wins over `-pattern` (Higress); neither means the value `always`.
fn value_rule(value: Option<(String, String)>, pattern: Option<(String, String)>) -> CanaryValue {
    match (value, pattern) {
        (Some((_, v)), _) => CanaryValue::OneOf(v),
        (None, Some((_, p))) => CanaryValue::Pattern(p),
        (None, None) => CanaryValue::Always,
    }
}

/// `mirror-target-fqdn` (with `-fqdn-port`, default 80) wins over `mirror-target-service`
/// (newer Higress); `mirror-percentage` applies to either.
fn parse_mirror(
    a: &Annos<'_>,
    namespace: &str,
) -> Result<Option<(MirrorTarget, f64)>, AnnotationError> {
    let target = if let Some((k, host)) = a.compat("mirror-target-fqdn") {
        if !is_fqdn(&host) {
            return Err(AnnotationError::new(
                &k,
                format!("{host:?} is not a host name"),
            ));
        }
        let port = match a.compat("mirror-target-fqdn-port") {
            Some((pk, pv)) => u16::try_from(parse_u32(&pk, &pv, 1, 65_535)?).unwrap_or(80),
            None => 80,
        };
        MirrorTarget::Fqdn {
            host: host.to_ascii_lowercase(),
            port,
        }
    } else if let Some((k, v)) = a.compat("mirror-target-service") {
        MirrorTarget::Service(parse_service_ref(&k, &v, namespace, true)?)
    } else {
        return Ok(None);
    };
    let percent = match a.compat("mirror-percentage") {
        Some((pk, pv)) => {
            let p = parse_int(&pk, &pv)?;
            if p < 0 {
                return Err(AnnotationError::new(&pk, format!("{p} is negative")));
            }
            // Higress: values of 100 or more mean "mirror everything".
            p.min(100) as f64
        }
        None => 100.0,
    };
    Ok(Some((target, percent)))
}

fn is_fqdn(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Annotation keys of the compatibility and fleetgate prefixes that fleetgate does not
/// implement (sorted): each is ignored, and the user should hear of it once.
pub fn unsupported(map: &BTreeMap<String, String>) -> Vec<String> {
    map.keys()
        .filter(|k| {
            if let Some(rest) = k.strip_prefix(OURS) {
                return !SUPPORTED_OURS.contains(&rest);
            }
            COMPAT_PREFIXES.iter().any(|p| {
                k.strip_prefix(p).is_some_and(|rest| {
                    let mse_only = *p == MSE && SUPPORTED_MSE.contains(&rest);
                    !(SUPPORTED_COMPAT.contains(&rest) || mse_only)
                })
            })
        })
        .cloned()
        .collect()
}

fn parse_bool(k: &str, v: &str) -> Result<bool, AnnotationError> {
    // Go's strconv.ParseBool.
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(AnnotationError::new(k, format!("{v:?} is not a boolean"))),
    }
}

fn parse_int(k: &str, v: &str) -> Result<i64, AnnotationError> {
    v.parse::<i64>()
        .map_err(|_| AnnotationError::new(k, format!("{v:?} is not an integer")))
}

fn parse_u32(k: &str, v: &str, min: u32, max: u32) -> Result<u32, AnnotationError> {
    let n = parse_int(k, v)?;
    if n < i64::from(min) || n > i64::from(max) {
        return Err(AnnotationError::new(
            k,
            format!("{n} is out of range {min}..={max}"),
        ));
    }
    Ok(n as u32)
}

fn parse_weights(k: &str, v: &str) -> Result<Vec<(String, u32)>, AnnotationError> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for item in v
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let Some((id, w)) = item.split_once('=') else {
            return Err(AnnotationError::new(
                k,
                format!("{item:?} is not cluster=weight"),
            ));
        };
        let (id, w) = (id.trim(), w.trim());
        check_cluster_id(k, id)?;
        let w = parse_u32(k, w, 0, 1_000_000)?;
        if out.iter().any(|(o, _)| o == id) {
            return Err(AnnotationError::new(
                k,
                format!("cluster {id:?} is listed twice"),
            ));
        }
        out.push((id.to_string(), w));
    }
    if out.is_empty() {
        return Err(AnnotationError::new(k, "no cluster=weight pairs"));
    }
    if out.iter().all(|(_, w)| *w == 0) {
        return Err(AnnotationError::new(k, "all weights are zero"));
    }
    Ok(out)
}

/// `name` or `name;max-age=N`.
fn parse_sticky(k: &str, v: &str) -> Result<(String, Option<u32>), AnnotationError> {
    let mut parts = v.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(AnnotationError::new(
            k,
            format!("{name:?} is not a valid cookie name"),
        ));
    }
    let mut max_age = None;
    for p in parts.filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("max-age", n)) => max_age = Some(parse_u32(k, n.trim(), 0, 31_536_000)?),
            _ => {
                return Err(AnnotationError::new(
                    k,
                    format!("unknown option {p:?} (expected max-age=SECONDS)"),
                ))
            }
        }
    }
    Ok((name.to_string(), max_age))
}

/// MSE `subset-labels`: one `key value` pair per line; fleetgate understands only the Istio
/// cluster label.
fn parse_subset_labels(k: &str, v: &str) -> Result<String, AnnotationError> {
    let mut cluster = None;
    for line in v.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(AnnotationError::new(
                k,
                format!("{line:?} is not a `key value` pair"),
            ));
        };
        if key != ISTIO_CLUSTER_LABEL {
            return Err(AnnotationError::new(
                k,
                format!("label {key:?} is not supported (only {ISTIO_CLUSTER_LABEL})"),
            ));
        }
        check_cluster_id(k, value)?;
        cluster = Some(value.to_string());
    }
    cluster.ok_or_else(|| AnnotationError::new(k, "no label"))
}

/// `[namespace/]name[:port]`; the port is only accepted where `allow_port`.
fn parse_service_ref(
    k: &str,
    v: &str,
    namespace: &str,
    allow_port: bool,
) -> Result<ServiceRef, AnnotationError> {
    let (ns, rest) = match v.split_once('/') {
        Some((ns, rest)) => (ns, rest),
        None => (namespace, v),
    };
    let (name, port) = match rest.rsplit_once(':') {
        Some((name, p)) if allow_port => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| AnnotationError::new(k, format!("{p:?} is not a port")))?;
            (name, Some(port))
        }
        _ => (rest, None),
    };
    for (what, s) in [("namespace", ns), ("service name", name)] {
        if !is_dns_label(s) {
            return Err(AnnotationError::new(
                k,
                format!("{s:?} is not a valid {what}"),
            ));
        }
    }
    Ok(ServiceRef {
        namespace: ns.to_string(),
        name: name.to_string(),
        port,
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Cluster ids follow the member id rule (see [`crate::members::check_member_id`]).
fn check_cluster_id(k: &str, id: &str) -> Result<(), AnnotationError> {
    crate::members::check_member_id(id).map_err(|e| AnnotationError::new(k, e))
}

fn header_name(k: &str, h: &str) -> Result<String, AnnotationError> {
    if h.is_empty() || !h.bytes().all(is_token_byte) {
        return Err(AnnotationError::new(
            k,
            format!("{h:?} is not a valid header name"),
        ));
    }
    Ok(h.to_ascii_lowercase())
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nginx_prefix_wins_over_higress_and_mse() {
        let m = annos(&[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("mse.ingress.kubernetes.io/canary-by-header", "x-mse"),
            ("higress.io/canary-by-header", "x-higress"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "x-nginx"),
        ]);
        let a = parse("default", &m).unwrap();
        assert_eq!(a.canary, Some(when(header("x-nginx"), CanaryValue::Always)));
    }

    fn header(h: &str) -> CanarySource {
        CanarySource::Header(h.into())
    }

    fn when(source: CanarySource, value: CanaryValue) -> CanaryMatch {
        CanaryMatch::When(vec![CanaryRule { source, value }])
    }

    #[test]
    fn canary_parse_order_follows_higress() {
        let weight = |weight, total| CanaryMatch::Weight { weight, total };
        let table: &[(&[(&str, &str)], CanaryMatch)] = &[
            (
                &[
                    ("higress.io/canary-by-header", "x-u"),
                    ("higress.io/canary-by-header-value", "v1"),
                    ("higress.io/canary-by-header-pattern", "p"),
                    ("higress.io/canary-weight", "30"),
                ],
                when(header("x-u"), CanaryValue::OneOf("v1".into())),
            ),
            (
                &[
                    ("higress.io/canary-by-header", "X-U"),
                    ("higress.io/canary-by-header-pattern", "p.*"),
                ],
                when(header("x-u"), CanaryValue::Pattern("p.*".into())),
            ),
            (
                &[
                    ("higress.io/canary-by-cookie", "beta"),
                    ("higress.io/canary-weight", "30"),
                ],
                when(CanarySource::Cookie("beta".into()), CanaryValue::Always),
            ),
            (
                // Header or query come before the cookie (MSE); both header and query: either.
                &[
                    ("higress.io/canary-by-header", "x-u"),
                    ("mse.ingress.kubernetes.io/canary-by-query", "beta"),
                    ("mse.ingress.kubernetes.io/canary-by-query-pattern", "on"),
                    ("higress.io/canary-by-cookie", "beta"),
                ],
                CanaryMatch::When(vec![
                    CanaryRule {
                        source: header("x-u"),
                        value: CanaryValue::Always,
                    },
                    CanaryRule {
                        source: CanarySource::Query("beta".into()),
                        value: CanaryValue::Pattern("on".into()),
                    },
                ]),
            ),
            (
                // MSE-only keys count only with the mse prefix.
                &[
                    ("higress.io/canary-by-query", "beta"),
                    ("higress.io/canary-weight", "5"),
                ],
                weight(5, None),
            ),
            (
                &[
                    ("nginx.ingress.kubernetes.io/canary-by-cookie", "stage"),
                    ("mse.ingress.kubernetes.io/canary-by-cookie-value", "gray"),
                ],
                when(
                    CanarySource::Cookie("stage".into()),
                    CanaryValue::Exact("gray".into()),
                ),
            ),
            (
                &[
                    ("higress.io/canary-weight", "30"),
                    ("higress.io/canary-weight-total", "0"),
                ],
                weight(30, None),
            ),
            (
                &[
                    ("higress.io/canary-weight", "300"),
                    ("higress.io/canary-weight-total", "100"),
                ],
                weight(300, Some(100)),
            ),
            (&[], weight(0, None)),
        ];
        for (pairs, want) in table {
            let mut m = annos(pairs);
            m.insert("higress.io/canary".into(), "true".into());
            assert_eq!(
                parse("default", &m).unwrap().canary.as_ref(),
                Some(want),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn unsupported_keys_of_our_prefixes_are_listed() {
        let m = annos(&[
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("higress.io/canary-by-query", "q"),
            ("mse.ingress.kubernetes.io/canary-by-query", "q"),
            ("higress.io/canary", "true"),
            ("fleetgate.io/mode", "active-active"),
            ("fleetgate.io/modes", "x"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(
            unsupported(&m),
            vec![
                "fleetgate.io/modes",
                "higress.io/canary-by-query",
                "nginx.ingress.kubernetes.io/rewrite-target"
            ]
        );
    }

    #[test]
    fn canary_false_is_not_a_canary() {
        let m = annos(&[("nginx.ingress.kubernetes.io/canary", "false")]);
        assert_eq!(parse("default", &m).unwrap().canary, None);
    }

    #[test]
    fn invalid_values_name_the_annotation() {
        let table = [
            ("fleetgate.io/mode", "hot-hot", "fleetgate.io/mode"),
            (
                "fleetgate.io/cluster-weights",
                "hz-a=80,hz-b",
                "fleetgate.io/cluster-weights",
            ),
            (
                "fleetgate.io/cluster-weights",
                "hz-a=0",
                "fleetgate.io/cluster-weights",
            ),
            (
                "fleetgate.io/cluster-weights",
                "hz-a=-3",
                "fleetgate.io/cluster-weights",
            ),
            (
                "fleetgate.io/cluster-order",
                "hz-a,hz-a",
                "fleetgate.io/cluster-order",
            ),
            (
                "fleetgate.io/route-by-header",
                "x cluster",
                "fleetgate.io/route-by-header",
            ),
            (
                "fleetgate.io/min-healthy",
                "many",
                "fleetgate.io/min-healthy",
            ),
            (
                "fleetgate.io/sticky-cookie",
                "fg;ttl=3",
                "fleetgate.io/sticky-cookie",
            ),
            ("higress.io/canary", "yes", "higress.io/canary"),
            (
                "higress.io/mirror-target-service",
                "shadow:http",
                "higress.io/mirror-target-service",
            ),
            (
                "mse.ingress.kubernetes.io/subset-labels",
                "app shop",
                "mse.ingress.kubernetes.io/subset-labels",
            ),
            (
                "nginx.ingress.kubernetes.io/default-backend",
                "Bad_Name",
                "nginx.ingress.kubernetes.io/default-backend",
            ),
        ];
        for (k, v, named) in table {
            let err = parse("default", &annos(&[(k, v)])).unwrap_err();
            assert_eq!(err.annotation, named, "{k}={v}: {err}");
        }
    }

    #[test]
    fn subset_labels_alias_fleetgate_cluster() {
        let m = annos(&[(
            "mse.ingress.kubernetes.io/subset-labels",
            "topology.istio.io/cluster hz-b\n",
        )]);
        assert_eq!(
            parse("default", &m).unwrap().cluster.as_deref(),
            Some("hz-b")
        );
        let m = annos(&[
            (
                "mse.ingress.kubernetes.io/subset-labels",
                "topology.istio.io/cluster hz-b",
            ),
            ("fleetgate.io/cluster", "hz-a"),
        ]);
        assert!(parse("default", &m).is_err());
    }

    #[test]
    fn mirror_defaults_namespace_and_full_percentage() {
        let m = annos(&[("higress.io/mirror-target-service", "shop-shadow:8080")]);
        let (target, pct) = parse("default", &m).unwrap().mirror.unwrap();
        assert_eq!(
            target,
            MirrorTarget::Service(ServiceRef {
                namespace: "default".into(),
                name: "shop-shadow".into(),
                port: Some(8080)
            })
        );
        assert_eq!(pct, 100.0);
        let m = annos(&[
            ("higress.io/mirror-target-service", "qa/shadow"),
            ("higress.io/mirror-percentage", "250"),
        ]);
        let (target, pct) = parse("default", &m).unwrap().mirror.unwrap();
        let MirrorTarget::Service(target) = target else {
            panic!("{target:?}")
        };
        assert_eq!(
            (target.namespace.as_str(), target.port, pct),
            ("qa", None, 100.0)
        );
    }

    #[test]
    fn sticky_cookie_accepts_max_age() {
        let m = annos(&[("fleetgate.io/sticky-cookie", "fg-cluster; max-age=600")]);
        assert_eq!(
            parse("default", &m).unwrap().sticky,
            Some(("fg-cluster".into(), Some(600)))
        );
    }
}
