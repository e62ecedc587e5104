//! Offline commands that need no cluster: `render` (YAML dumps -> plugin config JSON) and
//! `explain` (what the plugin would do with a request, using the plugin's own engine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetgate_plugin::config::{self as pcfg, ConfigError};
use fleetgate_plugin::decide::{select, Decision, Local};
use fleetgate_plugin::effects;
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::derive::{self, Contact, DeriveOptions, Derived, MemberSnapshot};
use crate::endpoints::{MemberIndex, Relist};
use crate::members::{self, MemberSpec};
use crate::settings;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Yaml { path: String, reason: String },
    #[error("{0}")]
    Members(#[from] members::MemberError),
    #[error("{0}")]
    Derive(#[from] derive::DeriveError),
    #[error("config {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: ConfigError,
    },
    #[error("{0}")]
    Usage(String),
}

/// Objects read from a directory of YAML dumps.
#[derive(Debug, Default)]
pub struct Dump {
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub namespaces: Vec<Namespace>,
    /// Gateway API (`gateway.networking.k8s.io`).
    pub gateway_api: crate::gateway_api::Objects,
}

impl Dump {
    /// Each namespace's labels, by name.
    pub fn namespace_labels(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        (self.namespaces.iter())
            .map(|n| {
                let name = n.metadata.name.clone().unwrap_or_default();
                (name, n.metadata.labels.clone().unwrap_or_default())
            })
            .collect()
    }
}

/// Read every `*.yaml`/`*.yml`/`*.json` file under `dir` (recursively, sorted), multi-document
/// or `kind: List` as `kubectl get -o yaml` prints; unknown kinds are ignored.
pub fn load_dir(dir: &Path) -> Result<Dump, CliError> {
    load_dirs(&[dir])
}

/// [`load_dir`] of each directory in order, into one dump (every kind merged).
pub fn load_dirs<P: AsRef<Path>>(dirs: &[P]) -> Result<Dump, CliError> {
    let mut dump = Dump::default();
    for dir in dirs {
        let mut files = Vec::new();
        collect_files(dir.as_ref(), &mut files)?;
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| CliError::Io {
                path: f.display().to_string(),
                source,
            })?;
            load_text(&text, &f.display().to_string(), &mut dump)?;
        }
    }
    Ok(dump)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.is_dir() {
            continue; // members live in sub-directories; each is passed on its own
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yaml" | "yml" | "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Add the objects of one YAML/JSON text to `dump`. A document that is not YAML is an error
/// (the file is unusable); an object that is not its kind's shape is skipped with a warning
/// (one bad object affects only itself).
pub fn load_text(text: &str, path: &str, dump: &mut Dump) -> Result<(), CliError> {
    use serde::Deserialize;
    let syntax = |reason: String| CliError::Yaml {
        path: path.to_string(),
        reason,
    };
    // JSON (the bulk of large dumps) is read by serde_json straight into the typed objects.
    if path.ends_with(".json") {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        add_raw(raw, path, dump);
        return Ok(());
    }
    // YAML (fixtures, hand-written dumps: small) takes the same path as JSON text.
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_json::Value::deserialize(doc).map_err(|e| syntax(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        let raw = RawValue::from_string(v.to_string()).map_err(|e| syntax(e.to_string()))?;
        add_raw(&raw, path, dump);
    }
    Ok(())
}

/// The kind of an object (and the items of a `List`), read without building a tree.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(default)]
    kind: String,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

fn add_raw(raw: &RawValue, path: &str, dump: &mut Dump) {
    let head: Head<'_> = match serde_json::from_str(raw.get()) {
        Ok(h) => h,
        Err(e) => return tracing::warn!("{path}: not an object ({e}); skipped"),
    };
    let text = raw.get();
    let result = match head.kind.as_str() {
        "List" => {
            for item in head.items {
                add_raw(item, path, dump);
            }
            Ok(())
        }
        "Ingress" => push_str(text, &mut dump.ingresses).map(|()| {
            if let Some(i) = dump.ingresses.last_mut() {
                crate::watch::trim(i);
            }
        }),
        "IngressClass" => push_str(text, &mut dump.ingress_classes),
        "Secret" => push_str(text, &mut dump.secrets),
        "ConfigMap" => push_str(text, &mut dump.config_maps),
        "Service" => push_str(text, &mut dump.services),
        "EndpointSlice" => push_str(text, &mut dump.endpoint_slices),
        "Namespace" => push_str(text, &mut dump.namespaces),
        "GatewayClass" => push_str(text, &mut dump.gateway_api.classes),
        "Gateway" => push_str(text, &mut dump.gateway_api.gateways),
        "HTTPRoute" => push_str(text, &mut dump.gateway_api.http_routes),
        "ReferenceGrant" => push_str(text, &mut dump.gateway_api.grants),
        "ServiceImport" => push_str(text, &mut dump.gateway_api.service_imports),
        _ => Ok(()),
    };
    if let Err(e) = result {
        let kind = head.kind;
        tracing::warn!("{path}: a {kind} is not a valid {kind} ({e}); skipped");
    }
}

fn push_str<K: serde::de::DeserializeOwned>(
    text: &str,
    out: &mut Vec<K>,
) -> Result<(), serde_json::Error> {
    out.push(serde_json::from_str(text)?);
    Ok(())
}

/// Inputs of `render`.
#[derive(Debug, Clone)]
pub struct RenderArgs {
    /// Directories of fleet objects (read in order, merged).
    pub fleet: Vec<PathBuf>,
    /// `NAME=DIR` per member with an EndpointSlice dump.
    pub members: Vec<(String, PathBuf)>,
    /// `NAME=ZONE` overrides.
    pub zones: Vec<(String, String)>,
    pub options: DeriveOptions,
}

/// Split `NAME=VALUE`.
pub fn split_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Derive the config from YAML dumps. Members: every `--member`, plus every Argo CD cluster
/// Secret in the fleet dump (a Secret's member without a dump is `unknown`, no endpoints known).
/// A Secret that names no usable member, or an id already taken, is skipped with a warning.
pub fn render(args: &RenderArgs) -> Result<Derived, CliError> {
    Ok(render_with_members(args)?.0)
}

/// [`render`], also returning the member snapshots it derived from (xDS builds the members'
/// endpoints from them).
pub fn render_with_members(args: &RenderArgs) -> Result<(Derived, Vec<MemberSnapshot>), CliError> {
    render_onto(args, &mut BTreeMap::new())
}

/// [`render_with_members`] onto the member indexes of the last call: each member's dump is
/// applied as a relist, so only what differs changes and each index's change log says what
/// (xDS then rebuilds only those endpoints). Members no longer named are dropped.
pub fn render_onto(
    args: &RenderArgs,
    indexes: &mut BTreeMap<String, Arc<MemberIndex>>,
) -> Result<(Derived, Vec<MemberSnapshot>), CliError> {
    let fleet = load_dirs(&args.fleet)?;
    let mut snaps: BTreeMap<String, MemberSnapshot> = BTreeMap::new();
    let secrets = secret_members(&fleet.secrets);
    indexes.retain(|id, _| {
        let named = args.members.iter().any(|(name, _)| name == id);
        named || secrets.iter().any(|m| m.id == *id)
    });
    for m in secrets {
        let index = Arc::clone(indexes.entry(m.id.clone()).or_default());
        let snap = snapshot(&m.id, (m.zone, m.gateway), Contact::Never, index);
        snaps.insert(m.id.clone(), snap);
    }
    for (name, dir) in &args.members {
        members::check_member_id(name).map_err(|e| CliError::Usage(format!("--member {e}")))?;
        let dump = load_dir(dir)?;
        // Zone and gateway from the member's Secret, if the fleet dump has one.
        let secret = snaps.get(name);
        let placed = (
            secret.and_then(|s| s.zone.clone()),
            secret.and_then(|s| s.gateway),
        );
        let index = indexes.entry(name.clone()).or_default();
        let i = Arc::make_mut(index);
        i.replace_services(Relist::of_services(&dump.services));
        i.replace_slices(Relist::of_slices(&dump.endpoint_slices));
        let index = Arc::clone(index);
        snaps.insert(name.clone(), snapshot(name, placed, Contact::Live, index));
    }
    for (name, zone) in &args.zones {
        match snaps.get_mut(name) {
            Some(s) => s.zone = Some(zone.clone()),
            None => return Err(CliError::Usage(format!("--zone {name}: no such member"))),
        }
    }
    let (options, warning) =
        class_options(&args.options, &fleet.ingress_classes, &fleet.config_maps);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let snaps: Vec<MemberSnapshot> = snaps.into_values().collect();
    let derived = derive_dump(&fleet, &snaps, &options)?;
    Ok((derived, snaps))
}

/// Derive from a fleet dump's Ingresses and Gateway API objects, with no memory of earlier
/// derivations.
pub fn derive_dump(
    fleet: &Dump,
    members: &[MemberSnapshot],
    options: &DeriveOptions,
) -> Result<Derived, derive::DeriveError> {
    let ingresses: Vec<Arc<Ingress>> = fleet.ingresses.iter().cloned().map(Arc::new).collect();
    let labels = fleet.namespace_labels();
    let gateway = derive::GatewayInputs {
        objects: &fleet.gateway_api,
        namespaces: &labels,
        address: None,
    };
    derive::Deriver::default().derive_with(&ingresses, Some(gateway), members, options)
}

/// `(zone, gateway)`: where a member is and how it is reached, from its Secret.
type Placement = (Option<String>, Option<std::net::SocketAddr>);

fn snapshot(
    id: &str,
    (zone, gateway): Placement,
    contact: Contact,
    index: Arc<MemberIndex>,
) -> MemberSnapshot {
    MemberSnapshot {
        id: id.to_string(),
        zone,
        contact,
        index,
        gateway,
    }
}

/// Members of the Argo CD cluster Secrets, Secrets by name; bad and duplicate ones are
/// reported and skipped.
fn secret_members(secrets: &[Secret]) -> Vec<MemberSpec> {
    let mut sorted: Vec<&Secret> = secrets
        .iter()
        .filter(|s| members::is_cluster_secret(s))
        .collect();
    sorted.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    let mut candidates = Vec::new();
    for s in sorted {
        match members::from_argo_secret(s) {
            Ok(m) => candidates.push((members::secret_name(s), m)),
            Err(e) => tracing::warn!("{e}; member ignored"),
        }
    }
    let (kept, dropped) = members::dedup(candidates);
    for (source, why) in dropped {
        tracing::warn!("{source}: {why}");
    }
    kept
}

/// The options with our IngressClass's settings applied: whether it is the default class, and
/// the plugin settings of its `spec.parameters` ConfigMap. A bad ConfigMap leaves the settings
/// as they were and says why.
pub fn class_options(
    base: &DeriveOptions,
    classes: &[IngressClass],
    config_maps: &[ConfigMap],
) -> (DeriveOptions, Option<String>) {
    let mut options = base.clone();
    let Some(class) = classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(options.ingress_class.as_str()))
    else {
        return (options, None);
    };
    options.class_is_default |= crate::watch::is_default_class(class);
    let found = settings::parameters_ref(class).map(|r| {
        let (ns, name) = r?;
        let cm = config_maps
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(&ns)
                    && c.metadata.name.as_deref() == Some(&name)
            })
            .ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?;
        settings::SettingsText::from_configmap(cm)?.apply(&options.settings)
    });
    match found {
        None => (options, None),
        Some(Ok(s)) => {
            options.settings = s;
            (options, None)
        }
        Some(Err(e)) => (
            options,
            Some(format!(
                "IngressClass {} parameters: {e}; keeping the settings from flags",
                base.ingress_class
            )),
        ),
    }
}

/// The pretty JSON `render` prints (trailing newline).
pub fn pretty(d: &Derived) -> Result<String, CliError> {
    let mut s = serde_json::to_string_pretty(d.config()).map_err(derive::DeriveError::from)?;
    s.push('\n');
    Ok(s)
}

/// Inputs of `explain`.
#[derive(Debug, Clone)]
pub struct ExplainArgs {
    pub config: PathBuf,
    pub host: String,
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub simulate: Option<u32>,
    pub seed: u64,
    /// `CLUSTER=STATE` what-ifs: `healthy`, `degraded`, `unknown`, `down` (the controller's
    /// view) or `ejected` (passive health has ejected every upstream of the cluster).
    pub states: Vec<(String, String)>,
}

/// A what-if `explain` applies to a loaded config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhatIf {
    State(pcfg::ClusterState),
    Ejected,
}

/// Parse `hz-a=down,hz-b=ejected` (or one pair).
pub fn split_states(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = split_pair(p)?;
            what_if(&v)?;
            Ok((k, v))
        })
        .collect()
}

fn what_if(v: &str) -> Result<WhatIf, String> {
    use pcfg::ClusterState as S;
    Ok(match v {
        "healthy" => WhatIf::State(S::Healthy),
        "degraded" => WhatIf::State(S::Degraded),
        "unknown" => WhatIf::State(S::Unknown),
        "down" => WhatIf::State(S::Down),
        "ejected" => WhatIf::Ejected,
        _ => {
            return Err(format!(
                "{v:?} is not healthy, degraded, unknown, down or ejected"
            ))
        }
    })
}

/// The config with the what-ifs applied, and the upstreams passive health has ejected.
struct Scenario {
    cfg: pcfg::Config,
    ejected: std::collections::BTreeSet<pcfg::UpstreamId>,
}

fn scenario(args: &ExplainArgs) -> Result<Scenario, CliError> {
    let mut cfg = load_config(&args.config)?;
    let mut ejected = std::collections::BTreeSet::new();
    for (id, v) in &args.states {
        let Some(ci) = cfg.cluster_index(id) else {
            return Err(CliError::Usage(format!(
                "--state {id}: no such cluster in the config"
            )));
        };
        match what_if(v).map_err(CliError::Usage)? {
            WhatIf::State(st) => cfg.clusters[ci].state = st,
            WhatIf::Ejected => {
                for r in cfg.routes.iter() {
                    let svcs = std::iter::once(&r.base).chain(&r.canaries);
                    for b in svcs.flat_map(|s| &s.backends).filter(|b| b.cluster == ci) {
                        ejected.insert(b.upstream);
                    }
                }
            }
        }
    }
    Ok(Scenario { cfg, ejected })
}

/// One explained decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub route: Option<String>,
    pub cluster: Option<String>,
    pub upstream: Option<String>,
    pub reason: String,
    pub canary: Option<String>,
    pub mirror: Option<String>,
    /// What the request becomes: the plugin's own answer (`301 location: ...`), or the host
    /// and path it is forwarded with when the route rewrites them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// Counts over simulated requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Simulation {
    pub clusters: BTreeMap<String, u64>,
    pub upstreams: BTreeMap<String, u64>,
    /// Requests no route matched or no cluster could take (only shown when non-zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub unrouted: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// Answered by the plugin itself (a redirect or a direct response).
    #[serde(skip_serializing_if = "is_zero")]
    pub answered: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Split `name: value`.
pub fn split_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not `name: value`")),
    }
}

fn load_config(path: &Path) -> Result<pcfg::Config, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })?;
    pcfg::parse(&bytes).map_err(|source| CliError::Config {
        path: path.display().to_string(),
        source,
    })
}

fn request(args: &ExplainArgs) -> SimpleRequest {
    let req = SimpleRequest::new(&args.host, &args.path).with_header(":method", &args.method);
    (args.headers.iter()).fold(req, |r, (k, v)| r.with_header(k, v))
}

/// The controller's view, with passive health as the what-ifs say; no failback timers.
fn decide(sc: &Scenario, req: &SimpleRequest, rng: &mut fastrand::Rng) -> Option<Decision> {
    let passive = |u| {
        let mut p = PassiveState::default();
        if sc.ejected.contains(&u) {
            p.ejected_until_ms = u64::MAX;
        }
        p
    };
    select(&sc.cfg, req, passive, 0, rng)
}

/// Explain one request.
pub fn explain(args: &ExplainArgs) -> Result<Explanation, CliError> {
    let sc = scenario(args)?;
    let req = request(args);
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let d = decide(&sc, &req, &mut rng);
    let answer = d.as_ref().and_then(|d| answer(&sc.cfg, d, &req));
    Ok(Explanation {
        answer,
        ..describe(&sc.cfg, d)
    })
}

/// The plugin's own reply to the request, or the host and path a rewrite forwards it with.
fn answer(cfg: &pcfg::Config, d: &Decision, req: &SimpleRequest) -> Option<String> {
    let fx = effects::on_request(cfg, Some(d), req, &[]);
    if let Some(r) = fx.local_reply {
        let headers = (r.headers.iter())
            .filter(|(k, _)| k == "location")
            .map(|(k, v)| format!(" {k}: {v}"));
        return Some(format!("{}{}", r.status, headers.collect::<String>()));
    }
    let set = |name: &str| {
        fx.set_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    let (host, path) = (set(":authority"), set(":path"));
    (host.is_some() || path.is_some()).then(|| {
        let host = host.map_or(req.authority.as_str(), |h| h.as_str());
        format!(
            "forwarded as {host}{}",
            path.map_or(req.path.as_str(), |p| p.as_str())
        )
    })
}

fn describe(cfg: &pcfg::Config, d: Option<Decision>) -> Explanation {
    let Some(d) = d else {
        return Explanation {
            route: None,
            cluster: None,
            upstream: None,
            reason: "no route matches (the plugin passes the request through)".to_string(),
            canary: None,
            mirror: None,
            answer: None,
        };
    };
    let route = cfg.routes.get(d.route);
    let mirror = d.mirror.map(|m| cfg.upstream_name(m).to_string());
    let reason = match d.local {
        Some(Local::Redirect) => "redirect: the plugin answers",
        Some(Local::Direct(_)) => "direct: the plugin answers",
        None => "unavailable: no cluster can take it (503)",
    };
    match d.target {
        None => Explanation {
            route: route.map(|r| r.name.clone()),
            cluster: None,
            upstream: None,
            reason: reason.to_string(),
            canary: match d.local {
                Some(Local::Direct(Some(c))) => route.and_then(|r| r.canaries.get(c)),
                _ => None,
            }
            .map(|s| s.name.clone()),
            mirror,
            answer: None,
        },
        Some(t) => Explanation {
            route: route.map(|r| r.name.clone()),
            cluster: cfg.clusters.get(t.cluster).map(|c| c.id.clone()),
            upstream: Some(cfg.upstream_name(t.upstream).to_string()),
            reason: t.reason.as_str().to_string(),
            canary: t
                .canary
                .and_then(|c| route.and_then(|r| r.canaries.get(c)))
                .map(|s| s.name.clone()),
            mirror,
            answer: None,
        },
    }
}

/// Run `n` requests through the engine with a seeded random source.
pub fn simulate(args: &ExplainArgs, n: u32) -> Result<Simulation, CliError> {
    let sc = scenario(args)?;
    let cfg = &sc.cfg;
    let req = request(args);
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut sim = Simulation::default();
    for _ in 0..n {
        match decide(&sc, &req, &mut rng) {
            None => sim.unrouted += 1,
            Some(Decision {
                target: None,
                local: Some(_),
                ..
            }) => sim.answered += 1,
            Some(Decision { target: None, .. }) => sim.rejected += 1,
            Some(Decision {
                target: Some(t), ..
            }) => {
                let c = cfg
                    .clusters
                    .get(t.cluster)
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                *sim.clusters.entry(c).or_default() += 1;
                *sim.upstreams
                    .entry(cfg.upstream_name(t.upstream).to_string())
                    .or_default() += 1;
            }
        }
    }
    Ok(sim)
}

/// Human-readable explanation.
pub fn format_explanation(e: &Explanation) -> String {
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!("{k:<10}{v}\n"));
        }
    };
    line(&mut s, "route:", &e.route);
    line(&mut s, "cluster:", &e.cluster);
    line(&mut s, "upstream:", &e.upstream);
    s.push_str(&format!("{:<10}{}\n", "reason:", e.reason));
    line(&mut s, "canary:", &e.canary);
    line(&mut s, "mirror:", &e.mirror);
    line(&mut s, "answer:", &e.answer);
    s
}
