//! The JSON wire format of config schema v1, exactly as gateways receive it.
//!
//! These types only describe shape: serde derives read them (unknown fields are rejected; an
//! absent field takes the `default_*` function or `Default` impl named here, the one place
//! defaults live) and meaning is checked in [`super::validate`]. They are `Serialize` too, so the controller builds
//! configs with the same types the plugin reads, and its output is byte-stable (fields in
//! declaration order, lists in the order the controller sorted them).

use serde::{Deserialize, Serialize};

/// The whole plugin configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigV1 {
    /// Schema version; must be 1.
    pub version: u32,
    /// Opaque revision set by the controller (shown in logs, returned as ETag by the controller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Request header the plugin sets to the chosen upstream (Envoy `cluster_header`).
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// Request header set to the mirror upstream (Envoy `request_mirror_policies.cluster_header`).
    #[serde(default = "default_mirror_header")]
    pub mirror_header: String,
    /// Optional response header explaining the decision (`cluster=..; reason=..; route=..`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_header: Option<String>,
    /// Seed for the weighted-choice random source; absent = seeded from the clock. For tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_seed: Option<u64>,
    /// Member clusters and the state the controller last saw.
    pub clusters: Vec<ClusterV1>,
    /// Passive health (outlier detection in the data plane).
    #[serde(default)]
    pub passive_health: PassiveHealthV1,
    /// Routes; matched like Ingress rules (most specific host, then most specific path), routes
    /// claiming one path in Gateway API order (see [`RouteV1::when`]).
    #[serde(default, deserialize_with = "at_most_routes")]
    pub routes: Vec<RouteV1>,
    /// Where to pull newer configs from (the controller); only read from the static config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_source: Option<ConfigSourceV1>,
}

/// Routes a config may hold: the validated form costs the VM about a kilobyte per route, so the
/// list is cut off while it is read rather than after.
pub const MAX_ROUTES: usize = 20_000;

fn at_most_routes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<RouteV1>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<RouteV1>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a sequence of at most {MAX_ROUTES} routes")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(r) = seq.next_element()? {
                if out.len() == MAX_ROUTES {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_ROUTES} routes"
                    )));
                }
                out.push(r);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

pub fn default_cluster_header() -> String {
    "x-fleetgate-upstream".to_string()
}

pub fn default_mirror_header() -> String {
    "x-fleetgate-mirror".to_string()
}

/// A member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterV1 {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default)]
    pub state: ClusterState,
}

/// What the control plane knows about a member cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Watch is live and endpoints are ready.
    #[default]
    Healthy,
    /// Watch is live, some endpoints are not ready; still takes traffic.
    Degraded,
    /// The control plane lost contact: keep the last endpoints, let passive health decide.
    Unknown,
    /// Real evidence of no capacity (e.g. zero ready endpoints cluster-wide): no new traffic.
    Down,
}

/// Passive health settings (shared by all routes; health is tracked per upstream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthV1 {
    pub enabled: bool,
    /// Consecutive failures that eject a healthy upstream.
    pub failure_threshold: u32,
    /// Consecutive failures that re-eject an upstream on probation (after an ejection).
    pub probation_failure_threshold: u32,
    /// Consecutive successes on probation before the upstream counts as healthy again.
    pub success_threshold: u32,
    /// First ejection length; doubles on each re-ejection up to the maximum.
    pub base_ejection_seconds: u32,
    pub max_ejection_seconds: u32,
    /// After an ejection, traffic ramps from 0 to the full share over this time.
    pub ramp_seconds: u32,
    /// Count HTTP 5xx responses as failures (connect failures and resets always count).
    pub count_5xx: bool,
}

impl Default for PassiveHealthV1 {
    fn default() -> Self {
        PassiveHealthV1 {
            enabled: true,
            failure_threshold: 5,
            probation_failure_threshold: 2,
            success_threshold: 5,
            base_ejection_seconds: 10,
            max_ejection_seconds: 300,
            ramp_seconds: 10,
            count_5xx: true,
        }
    }
}

/// One route: host and path matches, the clusters behind it and how traffic is shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteV1 {
    /// Name shown in logs and the decision header (the controller uses `namespace/ingress`).
    pub name: String,
    /// Hosts, exact or `*.suffix` (see [`RouteV1::wildcard`]); empty = any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths; empty = `Prefix /`.
    #[serde(default)]
    pub paths: Vec<PathV1>,
    #[serde(default)]
    pub mode: Mode,
    /// Active-standby: cluster ids, primary first. Clusters not listed are never used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Ready endpoints a cluster needs to count as usable for this route.
    #[serde(default = "default_min_healthy")]
    pub min_healthy: u32,
    #[serde(default)]
    pub failback: FailbackV1,
    /// The base service in each member cluster.
    pub backends: Vec<BackendV1>,
    /// Requests matching a pin go to its cluster (if usable); first matching pin wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<PinV1>,
    /// A request header whose value names the cluster to use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_by_header: Option<String>,
    /// Canary services (Higress semantics): matched by condition, else by weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<CanaryV1>,
    /// Denominator for canary weights (Higress `canary-weight-total`), default 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_weight_total: Option<u32>,
    /// The default backend (Higress/nginx `default-backend`): takes the traffic when the base
    /// service has no usable backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackV1>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorV1>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickyV1>,
    #[serde(default)]
    pub when_unavailable: WhenUnavailable,
    /// How `*.` host wildcards match: one DNS label (Ingress) or any suffix (Gateway API).
    #[serde(default, skip_serializing_if = "is_default")]
    pub wildcard: Wildcard,
    /// Request method the route is limited to (exact, e.g. `GET`); absent = any method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Further request tests that must all match (Gateway API header and query matches).
    /// Routes claiming the same host and path are tried most specific first: a method, then
    /// more header tests, then more query tests; a tie goes to the route listed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ConditionV1>,
    /// Header changes made to a routed request before it is forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderEditV1>,
    /// Header changes made to the response of a routed request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderEditV1>,
    /// Rewrite the request's host and/or path before it is forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteV1>,
    /// Answer with a redirect instead of routing (backends are then not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectV1>,
    /// Answer with this fixed response instead of routing (e.g. 500 for a route whose backend
    /// references cannot be resolved); `backends` may then be empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectV1>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// How a `*.suffix` host matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wildcard {
    /// `*.example.com` matches `a.example.com`, not `a.b.example.com` (Ingress).
    #[default]
    Label,
    /// `*.example.com` matches `a.example.com` and `a.b.example.com` (Gateway API); the
    /// longest matching suffix wins.
    Suffix,
}

/// Header changes, applied in field order: set (replace), add (append a value), remove.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditV1 {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderV1>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderV1>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderV1 {
    pub name: String,
    pub value: String,
}

/// A new path: the whole path, or the matched `Prefix` path replaced (Gateway API
/// `ReplaceFullPath` / `ReplacePrefixMatch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathRewriteV1 {
    Full(String),
    Prefix(String),
}

/// Gateway API `URLRewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteV1 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewriteV1>,
}

/// Gateway API `RequestRedirect`: the `Location` is the request's URL with these parts
/// replaced; the query is kept; a port that is the scheme's default is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectV1 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Absent = the well-known port of `scheme` if that is set (Gateway API), else the
    /// request's port (if its authority has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewriteV1>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

pub fn default_redirect_status() -> u16 {
    302
}

/// A fixed local response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectV1 {
    pub status: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

pub fn default_min_healthy() -> u32 {
    1
}

/// Ingress path match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathV1 {
    #[serde(rename = "type")]
    pub kind: PathKind,
    pub path: String,
}

/// Ingress `pathType` (`ImplementationSpecific` is treated as `Prefix` by the controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PathKind {
    Exact,
    Prefix,
    /// The whole path (query excluded) matches this regular expression (Gateway API
    /// `RegularExpression`); tried after the host's `Exact` paths and before its `Prefix`
    /// paths, in list order (Envoy Gateway's order).
    Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// All usable clusters share traffic by weight (explicit, or ready endpoints).
    #[default]
    ActiveActive,
    /// The first usable cluster of `order` takes everything.
    ActiveStandby,
}

/// How a cluster that comes back is given traffic again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailbackV1 {
    /// A recovered cluster must stay usable this long before it gets traffic again.
    pub hold_seconds: u32,
    /// Then its share grows linearly from 0 to full over this time.
    pub ramp_seconds: u32,
}

impl Default for FailbackV1 {
    fn default() -> Self {
        FailbackV1 {
            hold_seconds: 10,
            ramp_seconds: 30,
        }
    }
}

/// The service in one member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendV1 {
    pub cluster: String,
    /// Gateway upstream (Envoy cluster name) that reaches this service in this cluster.
    pub upstream: String,
    /// Ready endpoints the controller counted; absent = not counted (usable, weight 1 when
    /// weights follow ready endpoints). Hand-written configs usually leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<u32>,
    /// Explicit weight; if any backend of a service has one, all must.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// A request attribute test: exactly one of `header`, `cookie`, `query`, plus a `match`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionV1 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(rename = "match")]
    pub matcher: MatchV1,
}

/// How a value matches: `"always"` (nginx/Higress convention: the value is `always`),
/// `"present"` (any value), `"absent"` (no value at all), `{"exact": v}`, or `{"regex": re}`
/// (full match). An absent value matches only `"absent"`, as in Envoy, where only a
/// presence-false matcher matches a missing header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchV1 {
    Always,
    Present,
    Absent,
    Exact(String),
    Regex(String),
}

/// Condition -> cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinV1 {
    pub when: ConditionV1,
    pub cluster: String,
}

/// A canary service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryV1 {
    pub name: String,
    /// Any matching condition sends the request to the canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ConditionV1>,
    /// Canary weight (Higress normalisation); used when no condition is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    pub backends: Vec<BackendV1>,
    /// Answer the canary's share with this fixed response (`backends` may then be empty): a
    /// Gateway API backendRef that cannot be resolved keeps its weight and gets 500s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectV1>,
}

/// The route's default backend service, in whichever member clusters run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackV1 {
    /// Service name (`namespace/service`), for logs.
    pub name: String,
    pub backends: Vec<BackendV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorV1 {
    pub upstream: String,
    /// Share of matched requests mirrored, 0..=100.
    #[serde(default = "default_percent")]
    pub percent: f64,
}

pub fn default_percent() -> f64 {
    100.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyV1 {
    pub cookie: String,
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u32,
}

pub fn default_max_age() -> u32 {
    3600
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenUnavailable {
    /// Answer 503 locally with a clear body.
    #[default]
    Reject,
    /// Spread over all backends regardless of health (Envoy's panic threshold idea).
    Panic,
}

/// The controller endpoint the plugin long-polls for newer configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSourceV1 {
    /// Gateway upstream (Envoy cluster) of the controller.
    pub upstream: String,
    #[serde(default = "default_source_authority")]
    pub authority: String,
    #[serde(default = "default_source_path")]
    pub path: String,
    /// Path of the state document (cluster states, ready counts), pulled apart from the routes;
    /// empty = pull only full configs (a controller without `/v1/state`).
    #[serde(default = "default_state_path")]
    pub state_path: String,
    /// Bearer token for the controller's config endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How often a worker checks for a newer config (and, if it holds the lease, pulls).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u32,
    /// Long-poll wait the controller may hold the request for.
    #[serde(default = "default_wait_seconds")]
    pub wait_seconds: u32,
}

pub fn default_source_authority() -> String {
    "fleetgate-controller".to_string()
}
pub fn default_source_path() -> String {
    "/v1/config".to_string()
}
pub fn default_state_path() -> String {
    "/v1/state".to_string()
}
pub fn default_poll_ms() -> u32 {
    200
}
pub fn default_wait_seconds() -> u32 {
    20
}
