//! Semantic validation: wire config -> [`Config`], with cluster and upstream references resolved
//! to indexes, regexes compiled, weights checked and the route table built.
//!
//! Every check names the JSON path of the offending field, so an operator can find it.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::at::At;
use super::filters::{self, Filters};
use super::wire::*;
use super::ConfigError;
use crate::route::{RouteTable, RouteTests};

/// Index of an upstream name in [`Config::upstreams`] (passive health is kept per upstream).
pub type UpstreamId = usize;

const MAX_ID_LEN: usize = 253;
const MAX_REGEX_LEN: usize = 1024;
/// Compiled program size of one regex, in bytes (regex-lite's default is 10 MB): a few hundred
/// states, plenty for a header pattern.
const REGEX_SIZE_LIMIT: usize = 16 * 1024;
const REGEX_NEST_LIMIT: u32 = 32;
const MAX_SECONDS: u32 = 86_400;
const MAX_WEIGHT: u32 = 1_000_000;
/// Active-standby chains longer than this are not a real topology (and the engine keeps the
/// shares in a fixed array).
pub const MAX_ORDER: usize = 16;

/// A validated config: the routes, immutable once built and shared by every state applied to
/// them ([`Arc`]), and the state the controller reports (cluster states, ready endpoints per
/// backend) with the failback timers [`crate::failback`] derives from it. A state update
/// ([`Config::with_state`]) replaces only the state; it never re-reads the routes.
#[derive(Debug, Clone)]
pub struct Config {
    pub revision: Option<String>,
    /// The revision of the routes this config runs (the pull's ETag); state documents name it.
    pub routes_revision: Option<String>,
    /// The revision of the last state document applied, if any.
    pub state_revision: Option<String>,
    pub cluster_header: String,
    pub mirror_header: String,
    pub decision_header: Option<String>,
    pub random_seed: Option<u64>,
    /// Member clusters with their current state.
    pub clusters: Vec<Cluster>,
    pub passive: PassiveHealthV1,
    pub routes: Arc<Vec<Route>>,
    pub table: Arc<RouteTable>,
    /// Every distinct upstream name referenced by a backend or mirror.
    pub upstreams: Arc<Vec<String>>,
    /// Per backend ([`Backend::slot`]): what the controller counted and its failback timer.
    pub backends: Vec<BackendState>,
    /// Per backend: what its state needs of its route, so a state is applied and failback
    /// timers carried over flat arrays, not by walking the routes.
    pub slots: Arc<Vec<Slot>>,
    pub config_source: Option<ConfigSourceV1>,
}

/// The immutable part of one backend that its state is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of its route.
    pub route: u32,
    /// Index of its cluster in [`Config::clusters`].
    pub cluster: u32,
    /// Its route's `min_healthy`.
    pub min_healthy: u32,
    /// Its failback key ([`crate::failback::key`] of route, service and cluster).
    pub key: u64,
}

/// The mutable part of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendState {
    /// Ready endpoints the controller counted; `None` = not counted.
    pub ready: Option<u32>,
    /// When this backend last became usable again after being unusable (failback hold + ramp);
    /// `None` = no failback timer (usable since before the plugin knew it).
    pub recovered_at_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub id: String,
    pub zone: Option<String>,
    pub state: ClusterState,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub mode: Mode,
    /// Active-standby order as indexes into `base.backends`.
    pub order: Vec<usize>,
    pub min_healthy: u32,
    pub failback: FailbackV1,
    pub base: Service,
    pub pins: Vec<Pin>,
    pub route_by_header: Option<String>,
    pub canaries: Vec<Service>,
    /// Per canary: its conditions (any matches).
    pub canary_when: Vec<Vec<Condition>>,
    /// Per canary: its share in percent after Higress normalisation (0 = not weighted).
    pub canary_percent: Vec<u32>,
    /// The default backend service, used when the base service has no usable backend.
    pub fallback: Option<Service>,
    pub mirror: Option<(UpstreamId, f64)>,
    pub sticky: Option<StickyV1>,
    pub when_unavailable: WhenUnavailable,
    /// Request headers the decision may read (lower-case, `cookie` included if needed): what
    /// a native caller (`explain`) must supply. The filter reads all headers in one hostcall.
    pub needed_headers: Vec<String>,
    /// The route's paths (`Prefix /` if it has none): a prefix rewrite replaces the one matched.
    pub paths: Vec<PathV1>,
    pub filters: Filters,
    /// Per canary: answer its share with this response instead of a backend.
    pub canary_direct: Vec<Option<DirectV1>>,
}

impl Route {
    /// Does the route answer every request itself (redirect or direct response)?
    pub fn answers_locally(&self) -> bool {
        self.filters.redirect.is_some() || self.filters.direct.is_some()
    }

    /// The route's services in a fixed order: base, canaries, fallback.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        std::iter::once(&self.base)
            .chain(&self.canaries)
            .chain(&self.fallback)
    }

    /// Every upstream a decision on this route may pick (base, canaries, fallback).
    pub fn upstreams(&self) -> impl Iterator<Item = UpstreamId> + '_ {
        self.services()
            .flat_map(|s| s.backends.iter().map(|b| b.upstream))
    }

    /// Every backend of the route in slot order: base, canaries, fallback.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.services().flat_map(|s| &s.backends)
    }
}

/// A service present in several member clusters.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub cluster: usize,
    pub upstream: UpstreamId,
    /// Index of its state in [`Config::backends`]: backends are numbered routes first, then
    /// [`Route::services`] order, the order of a state document's `ready`.
    pub slot: usize,
    /// Explicit weight; `None` = weighted by ready endpoints (see [`Config::weight`]).
    pub weight: Option<u32>,
    /// An explicit weight of 0: drained on purpose, so its absence is not a failover.
    pub drained: bool,
}

#[derive(Debug, Clone)]
pub struct Pin {
    pub when: Condition,
    /// Index into the route's `base.backends`.
    pub backend: usize,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub source: Source,
    pub matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Lower-case header name.
    Header(String),
    Cookie(String),
    Query(String),
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Always,
    Present,
    /// Matches only a missing value (see [`Matcher::matches_value`]).
    Absent,
    Exact(String),
    /// Shared: routes repeat the same patterns, so each distinct one is compiled once.
    Regex(std::sync::Arc<regex_lite::Regex>),
}

impl Matcher {
    /// Does a present value match? `Absent` never does.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Always => value == "always",
            Matcher::Present => true,
            Matcher::Absent => false,
            Matcher::Exact(v) => value == v,
            Matcher::Regex(re) => re.is_match(value),
        }
    }

    /// Does the value, or its absence (`None`), match? Only `Absent` matches a missing value.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.matches(v),
            None => matches!(self, Matcher::Absent),
        }
    }
}

impl Config {
    /// Ready endpoints the controller counted for this backend (`None` = not counted).
    pub fn ready(&self, b: &Backend) -> Option<u32> {
        self.backends.get(b.slot).and_then(|s| s.ready)
    }

    /// Effective weight: explicit, or ready endpoints (1 if not counted).
    pub fn weight(&self, b: &Backend) -> u32 {
        b.weight.unwrap_or_else(|| self.ready(b).unwrap_or(1))
    }

    pub fn recovered_at_ms(&self, b: &Backend) -> Option<u64> {
        self.backends.get(b.slot).and_then(|s| s.recovered_at_ms)
    }

    /// Is a backend of the route in its failback hold or ramp (so decisions depend on the time)?
    pub fn has_failback_timers(&self, route: &Route) -> bool {
        route.backends().any(|b| self.recovered_at_ms(b).is_some())
    }

    pub fn cluster_index(&self, id: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.id == id)
    }
    pub fn upstream_name(&self, id: UpstreamId) -> &str {
        self.upstreams.get(id).map(String::as_str).unwrap_or("")
    }
}

/// Validation state: cluster ids and the upstream interner. Keys borrow from the wire config
/// `'w` (one string allocation per distinct upstream, not two).
struct Builder<'w> {
    cluster_ids: HashMap<&'w str, usize>,
    upstreams: Vec<String>,
    upstream_ids: HashMap<&'w str, UpstreamId>,
    regexes: HashMap<&'w str, std::sync::Arc<regex_lite::Regex>>,
    /// Per backend slot, in numbering order.
    backends: Vec<BackendState>,
    slots: Vec<Slot>,
    /// The route being built: index, `min_healthy`, name.
    route: (u32, u32, &'w str),
    /// The headers the plugin routes by (`cluster_header`, `mirror_header`).
    routing: Vec<String>,
}

impl<'w> Builder<'w> {
    fn upstream(&mut self, name: &'w str) -> UpstreamId {
        let next = self.upstreams.len();
        let id = *self.upstream_ids.entry(name).or_insert(next);
        if id == next {
            self.upstreams.push(name.to_string());
        }
        id
    }
}

impl TryFrom<ConfigV1> for Config {
    type Error = ConfigError;

    fn try_from(w: ConfigV1) -> Result<Self, ConfigError> {
        if w.version != 1 {
            return Err(ConfigError::new(
                "version",
                format!(
                    "unsupported version {} (this plugin reads version 1)",
                    w.version
                ),
            ));
        }
        let cluster_header = header_name(&At::Root.field("cluster_header"), &w.cluster_header)?;
        let mirror_header = header_name(&At::Root.field("mirror_header"), &w.mirror_header)?;
        if mirror_header == cluster_header {
            return Err(ConfigError::new(
                "mirror_header",
                "must differ from cluster_header",
            ));
        }
        let decision_header = match &w.decision_header {
            Some(h) => Some(header_name(&At::Root.field("decision_header"), h)?),
            None => None,
        };
        check_passive(&w.passive_health)?;
        if let Some(src) = &w.config_source {
            check_source(src)?;
        }

        if w.clusters.is_empty() {
            return Err(ConfigError::new(
                "clusters",
                "at least one cluster is required",
            ));
        }
        let mut b = Builder {
            cluster_ids: HashMap::default(),
            upstreams: Vec::new(),
            upstream_ids: HashMap::default(),
            regexes: HashMap::default(),
            backends: Vec::new(),
            slots: Vec::new(),
            route: (0, 0, ""),
            routing: vec![cluster_header.clone(), mirror_header.clone()],
        };
        let mut clusters = Vec::with_capacity(w.clusters.len());
        let at_clusters = At::Root.field("clusters");
        for (i, c) in w.clusters.iter().enumerate() {
            let cluster = at_clusters.index(i);
            let path = cluster.field("id");
            check_id(&path, &c.id)?;
            if b.cluster_ids.insert(&c.id, i).is_some() {
                return Err(ConfigError::new(
                    path,
                    format!("duplicate cluster id \"{}\"", c.id),
                ));
            }
            clusters.push(Cluster {
                id: c.id.clone(),
                zone: c.zone.clone(),
                state: c.state,
            });
        }

        let mut routes = Vec::with_capacity(w.routes.len());
        let mut tests = Vec::with_capacity(w.routes.len());
        let at_routes = At::Root.field("routes");
        for (i, r) in w.routes.iter().enumerate() {
            b.route = (i as u32, r.min_healthy, &r.name);
            let (route, t) = build_route(&mut b, &at_routes.index(i), r)?;
            routes.push(route);
            tests.push(t);
        }
        let table = RouteTable::build(&w.routes, tests)?;

        Ok(Config {
            revision: w.revision,
            routes_revision: None,
            state_revision: None,
            cluster_header,
            mirror_header,
            decision_header,
            random_seed: w.random_seed,
            clusters,
            passive: w.passive_health,
            routes: Arc::new(routes),
            table: Arc::new(table),
            upstreams: Arc::new(b.upstreams),
            backends: b.backends,
            slots: Arc::new(b.slots),
            config_source: w.config_source,
        })
    }
}

fn build_route<'w>(
    b: &mut Builder<'w>,
    path: &At,
    r: &'w RouteV1,
) -> Result<(Route, RouteTests), ConfigError> {
    if r.name.trim().is_empty() {
        return Err(ConfigError::new(path.field("name"), "must not be empty"));
    }
    let filters = filters::build(path, r, &b.routing)?;
    let tests = build_tests(b, path, r)?;
    check_seconds(
        &path.field("failback.hold_seconds"),
        r.failback.hold_seconds,
    )?;
    check_seconds(
        &path.field("failback.ramp_seconds"),
        r.failback.ramp_seconds,
    )?;
    // A route that answers locally needs no backends.
    let local = filters.redirect.is_some() || filters.direct.is_some();
    let base = build_service(b, &path.field("backends"), &r.name, &r.backends, local)?;

    let order = match r.mode {
        Mode::ActiveActive => {
            if !r.order.is_empty() {
                return Err(ConfigError::new(
                    path.field("order"),
                    "order is only used with mode active-standby",
                ));
            }
            Vec::new()
        }
        Mode::ActiveStandby => {
            if r.order.is_empty() {
                return Err(ConfigError::new(
                    path.field("order"),
                    "active-standby needs an order (primary first)",
                ));
            }
            if r.order.len() > MAX_ORDER {
                return Err(ConfigError::new(
                    path.field("order"),
                    format!("at most {MAX_ORDER} clusters"),
                ));
            }
            let mut order = Vec::with_capacity(r.order.len());
            let at_order = path.field("order");
            for (j, id) in r.order.iter().enumerate() {
                let p = at_order.index(j);
                let k = backend_of(b, &base, &p, id)?;
                if order.contains(&k) {
                    return Err(ConfigError::new(
                        p,
                        format!("cluster \"{id}\" is listed twice"),
                    ));
                }
                order.push(k);
            }
            order
        }
    };

    let mut pins = Vec::with_capacity(r.pins.len());
    let at_pins = path.field("pins");
    for (j, pin) in r.pins.iter().enumerate() {
        let p = at_pins.index(j);
        pins.push(Pin {
            when: build_condition(b, &p.field("when"), &pin.when)?,
            backend: backend_of(b, &base, &p.field("cluster"), &pin.cluster)?,
        });
    }
    let route_by_header = match &r.route_by_header {
        Some(h) => Some(header_name(&path.field("route_by_header"), h)?),
        None => None,
    };

    let mut canaries = Vec::with_capacity(r.canaries.len());
    let mut canary_direct = Vec::with_capacity(r.canaries.len());
    let mut canary_when = Vec::with_capacity(r.canaries.len());
    let mut weights = Vec::with_capacity(r.canaries.len());
    let at_canaries = path.field("canaries");
    for (j, c) in r.canaries.iter().enumerate() {
        let p = at_canaries.index(j);
        if c.name.trim().is_empty() {
            return Err(ConfigError::new(p.field("name"), "must not be empty"));
        }
        if c.when.is_empty() && c.weight.is_none() {
            return Err(ConfigError::new(
                p,
                "a canary needs conditions (when) or a weight",
            ));
        }
        let mut when = Vec::with_capacity(c.when.len());
        let at_when = p.field("when");
        for (k, cond) in c.when.iter().enumerate() {
            when.push(build_condition(b, &at_when.index(k), cond)?);
        }
        let w = c.weight.unwrap_or(0);
        if w > 100 && r.canary_weight_total.is_none() {
            return Err(ConfigError::new(
                p.field("weight"),
                format!("{w} is over 100; set canary_weight_total for another scale"),
            ));
        }
        check_weight(&p.field("weight"), w)?;
        weights.push(w);
        canary_when.push(when);
        if let Some(d) = &c.direct {
            filters::check_direct(&p.field("direct"), d)?;
        }
        canary_direct.push(c.direct.clone());
        canaries.push(build_service(
            b,
            &p.field("backends"),
            &c.name,
            &c.backends,
            c.direct.is_some(),
        )?);
    }
    if let Some(t) = r.canary_weight_total {
        if t == 0 {
            return Err(ConfigError::new(
                path.field("canary_weight_total"),
                "must be greater than 0",
            ));
        }
        check_weight(&path.field("canary_weight_total"), t)?;
    }
    let canary_percent = crate::split::higress_canary_percents(&weights, r.canary_weight_total);
    let fallback = match &r.fallback {
        Some(f) => {
            let p = path.field("fallback");
            if f.name.trim().is_empty() {
                return Err(ConfigError::new(p.field("name"), "must not be empty"));
            }
            Some(build_service(
                b,
                &p.field("backends"),
                &f.name,
                &f.backends,
                false,
            )?)
        }
        None => None,
    };

    let mirror = match &r.mirror {
        Some(m) => {
            let p = path.field("mirror");
            if m.upstream.trim().is_empty() {
                return Err(ConfigError::new(p.field("upstream"), "must not be empty"));
            }
            if !(m.percent.is_finite() && (0.0..=100.0).contains(&m.percent)) {
                return Err(ConfigError::new(
                    p.field("percent"),
                    "must be a percentage between 0 and 100",
                ));
            }
            Some((b.upstream(&m.upstream), m.percent))
        }
        None => None,
    };
    if let Some(s) = &r.sticky {
        if s.cookie.is_empty() || !s.cookie.bytes().all(is_token_byte) {
            return Err(ConfigError::new(
                path.field("sticky.cookie"),
                format!("\"{}\" is not a valid cookie name", s.cookie),
            ));
        }
    }

    let mut needed_headers: Vec<String> = Vec::new();
    let conditions = pins
        .iter()
        .map(|p| &p.when)
        .chain(canary_when.iter().flatten())
        .chain(&tests.when);
    for c in conditions {
        let h = match &c.source {
            Source::Header(h) => h.as_str(),
            Source::Cookie(_) => "cookie",
            Source::Query(_) => continue,
        };
        if !needed_headers.iter().any(|n| n == h) {
            needed_headers.push(h.to_string());
        }
    }
    if let Some(h) = &route_by_header {
        if !needed_headers.contains(h) {
            needed_headers.push(h.clone());
        }
    }
    if r.sticky.is_some() && !needed_headers.iter().any(|n| n == "cookie") {
        needed_headers.push("cookie".to_string());
    }

    let paths = match r.paths.is_empty() {
        true => vec![PathV1 {
            kind: PathKind::Prefix,
            path: "/".to_string(),
        }],
        false => r.paths.clone(),
    };
    let route = Route {
        needed_headers,
        name: r.name.clone(),
        mode: r.mode,
        order,
        min_healthy: r.min_healthy,
        failback: r.failback.clone(),
        base,
        pins,
        route_by_header,
        canaries,
        canary_when,
        canary_percent,
        fallback,
        mirror,
        sticky: r.sticky.clone(),
        when_unavailable: r.when_unavailable,
        paths,
        filters,
        canary_direct,
    };
    Ok((route, tests))
}

/// The route's method and `when` tests, which pick it among routes claiming one path.
fn build_tests<'w>(
    b: &mut Builder<'w>,
    path: &At,
    r: &'w RouteV1,
) -> Result<RouteTests, ConfigError> {
    if let Some(m) = &r.method {
        if m.is_empty() || !m.bytes().all(is_token_byte) {
            return Err(ConfigError::new(
                path.field("method"),
                format!("\"{m}\" is not an HTTP method"),
            ));
        }
    }
    let at_when = path.field("when");
    let when = r
        .when
        .iter()
        .enumerate()
        .map(|(k, c)| build_condition(b, &at_when.index(k), c))
        .collect::<Result<_, _>>()?;
    Ok(RouteTests {
        method: r.method.clone(),
        when,
    })
}

fn build_service<'w>(
    b: &mut Builder<'w>,
    path: &At,
    name: &str,
    backends: &'w [BackendV1],
    may_be_empty: bool,
) -> Result<Service, ConfigError> {
    if backends.is_empty() && !may_be_empty {
        return Err(ConfigError::new(
            path,
            "at least one backend is required (none only with a redirect or direct response)",
        ));
    }
    let explicit = backends.iter().filter(|be| be.weight.is_some()).count();
    if explicit != 0 && explicit != backends.len() {
        return Err(ConfigError::new(
            path,
            "set a weight on every backend or on none (none = by ready endpoints)",
        ));
    }
    let mut out: Vec<Backend> = Vec::with_capacity(backends.len());
    for (i, be) in backends.iter().enumerate() {
        let p = path.index(i);
        let cluster = match b.cluster_ids.get(be.cluster.as_str()) {
            Some(&c) => c,
            None => {
                return Err(ConfigError::new(
                    p.field("cluster"),
                    format!("unknown cluster \"{}\" (not in clusters)", be.cluster),
                ))
            }
        };
        if out.iter().any(|o| o.cluster == cluster) {
            return Err(ConfigError::new(
                p.field("cluster"),
                format!("cluster \"{}\" has two backends in one service", be.cluster),
            ));
        }
        if be.upstream.trim().is_empty() {
            return Err(ConfigError::new(p.field("upstream"), "must not be empty"));
        }
        if let Some(w) = be.weight {
            check_weight(&p.field("weight"), w)?;
        }
        out.push(Backend {
            cluster,
            upstream: b.upstream(&be.upstream),
            slot: b.backends.len(),
            weight: be.weight,
            drained: be.weight == Some(0),
        });
        b.backends.push(BackendState {
            ready: be.ready,
            recovered_at_ms: None,
        });
        let (route, min_healthy, route_name) = b.route;
        b.slots.push(Slot {
            route,
            cluster: cluster as u32,
            min_healthy,
            key: crate::failback::key(route_name, name, &be.cluster),
        });
    }
    if explicit != 0 && !out.is_empty() && out.iter().all(|o| o.weight == Some(0)) {
        return Err(ConfigError::new(path, "all weights are zero"));
    }
    Ok(Service {
        name: name.to_string(),
        backends: out,
    })
}

fn backend_of(b: &Builder<'_>, svc: &Service, path: &At, id: &str) -> Result<usize, ConfigError> {
    let Some(&c) = b.cluster_ids.get(id) else {
        return Err(ConfigError::new(
            path,
            format!("unknown cluster \"{id}\" (not in clusters)"),
        ));
    };
    svc.backends
        .iter()
        .position(|be| be.cluster == c)
        .ok_or_else(|| {
            ConfigError::new(
                path,
                format!("the route has no backend in cluster \"{id}\""),
            )
        })
}

fn build_condition<'w>(
    b: &mut Builder<'w>,
    path: &At,
    c: &'w ConditionV1,
) -> Result<Condition, ConfigError> {
    let source = match (&c.header, &c.cookie, &c.query) {
        (Some(h), None, None) => Source::Header(header_name(&path.field("header"), h)?),
        (None, Some(k), None) if !k.is_empty() => Source::Cookie(k.clone()),
        (None, None, Some(q)) if !q.is_empty() => Source::Query(q.clone()),
        _ => {
            return Err(ConfigError::new(
                path,
                "name exactly one non-empty header, cookie or query",
            ))
        }
    };
    let matcher = match &c.matcher {
        MatchV1::Always => Matcher::Always,
        MatchV1::Present => Matcher::Present,
        MatchV1::Absent => Matcher::Absent,
        MatchV1::Exact(v) => Matcher::Exact(v.clone()),
        MatchV1::Regex(re) => {
            let r = match b.regexes.get(re.as_str()) {
                Some(r) => r.clone(),
                None => {
                    let r = checked_regex(re)
                        .map_err(|e| ConfigError::new(path.field("match.regex"), e))?;
                    let r = Arc::new(r);
                    b.regexes.insert(re, r.clone());
                    r
                }
            };
            Matcher::Regex(r)
        }
    };
    Ok(Condition { source, matcher })
}

/// A pattern within the limits, compiled for a full match; why not otherwise.
pub(crate) fn checked_regex(re: &str) -> Result<regex_lite::Regex, String> {
    if re.len() > MAX_REGEX_LEN {
        return Err(format!("longer than {MAX_REGEX_LEN} bytes"));
    }
    compile_regex(re).map_err(|e| format!("invalid regex: {e}"))
}

/// Full match, as Envoy's `safe_regex` and Higress' canary patterns do. The limits keep a
/// hostile pattern (`(a{1000}){1000}`) from costing the VM memory or time: regex-lite matches in
/// `O(program * haystack)`, so a small program bounds every request. The pattern is compiled
/// alone first, so that one like `a)|(b` cannot break out of the anchoring group.
fn compile_regex(re: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    let build = |p: &str| {
        regex_lite::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
    };
    build(re)?;
    build(&format!("^(?:{re})$"))
}

/// Header names must be lower-case tokens (HTTP/2 and Envoy store them lower-case).
pub(super) fn header_name(path: &At, h: &str) -> Result<String, ConfigError> {
    if h.is_empty() || h.starts_with(':') || !h.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            path,
            format!("\"{h}\" is not a valid header name"),
        ));
    }
    Ok(h.to_ascii_lowercase())
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Cluster ids appear in annotations (`a=80,b=20`) and headers, so keep them plain.
fn check_id(path: &At, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("\"{id}\" is not a cluster id (1-{MAX_ID_LEN} of [A-Za-z0-9._-])"),
        ))
    }
}

fn check_weight(path: &At, w: u32) -> Result<(), ConfigError> {
    if w > MAX_WEIGHT {
        return Err(ConfigError::new(
            path,
            format!("{w} is larger than the maximum weight {MAX_WEIGHT}"),
        ));
    }
    Ok(())
}

fn check_seconds(path: &At, s: u32) -> Result<(), ConfigError> {
    if s > MAX_SECONDS {
        return Err(ConfigError::new(
            path,
            format!("{s} is more than one day ({MAX_SECONDS} seconds)"),
        ));
    }
    Ok(())
}

fn check_passive(p: &PassiveHealthV1) -> Result<(), ConfigError> {
    for (name, v) in [
        ("failure_threshold", p.failure_threshold),
        ("probation_failure_threshold", p.probation_failure_threshold),
        ("success_threshold", p.success_threshold),
    ] {
        if v == 0 || v > 10_000 {
            return Err(ConfigError::new(
                format!("passive_health.{name}"),
                format!("{v} is out of range 1..=10000"),
            ));
        }
    }
    for (name, v) in [
        ("base_ejection_seconds", p.base_ejection_seconds),
        ("max_ejection_seconds", p.max_ejection_seconds),
        ("ramp_seconds", p.ramp_seconds),
    ] {
        check_seconds(&At::Root.field("passive_health").field(name), v)?;
    }
    if p.base_ejection_seconds == 0 {
        return Err(ConfigError::new(
            "passive_health.base_ejection_seconds",
            "must be at least 1",
        ));
    }
    if p.max_ejection_seconds < p.base_ejection_seconds {
        return Err(ConfigError::new(
            "passive_health.max_ejection_seconds",
            "must not be less than base_ejection_seconds",
        ));
    }
    Ok(())
}

fn check_source(s: &ConfigSourceV1) -> Result<(), ConfigError> {
    if s.upstream.trim().is_empty() {
        return Err(ConfigError::new(
            "config_source.upstream",
            "must not be empty",
        ));
    }
    if !s.path.starts_with('/') {
        return Err(ConfigError::new(
            "config_source.path",
            "must start with '/'",
        ));
    }
    if !(s.state_path.is_empty() || s.state_path.starts_with('/')) {
        return Err(ConfigError::new(
            "config_source.state_path",
            "must start with '/' (or be empty: no state pulls)",
        ));
    }
    if s.poll_ms < 50 || s.poll_ms > 3_600_000 {
        return Err(ConfigError::new(
            "config_source.poll_ms",
            format!("{} is out of range 50..=3600000", s.poll_ms),
        ));
    }
    if s.wait_seconds > 300 {
        return Err(ConfigError::new(
            "config_source.wait_seconds",
            format!("{} is more than 300", s.wait_seconds),
        ));
    }
    Ok(())
}
