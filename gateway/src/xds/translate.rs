//! Pure translation of the xDS resources fleetgate emits into what the gateway runs: cluster
//! kinds, endpoints, the listener, the route table and the plugin's source. Anything outside
//! that subset is an error naming the resource and what is unsupported; the caller NACKs it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, config_source, data_source, http_uri, socket_address, Address,
    ConfigSource, HealthStatus, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::wasm::v3::plugin_config;
use envoy_types::pb::google::protobuf::{Any, StringValue};
use prost::{Message, Name};

pub use super::rds::route_table;

/// The Envoy name of the aggregate cluster type.
pub const AGGREGATE: &str = "envoy.clusters.aggregate";
/// The only retry priority the gateway implements (each retry on another priority/member).
pub const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";

/// What a cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterKind {
    /// Endpoints by EDS under this service name.
    Eds { service_name: String },
    /// Plain clusters in priority order.
    Aggregate(Vec<String>),
    /// STATIC or STRICT_DNS: (host, port) from its inline load assignment.
    Fixed(Vec<(String, u16)>),
}

/// One translated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub kind: ClusterKind,
}

/// The listener: where to listen, which route configuration and which ECDS filter it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub route_config: String,
    /// Name of the Wasm filter delivered by ECDS.
    pub plugin: String,
}

/// Where the plugin's `.wasm` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    File(PathBuf),
    Inline(Vec<u8>),
    /// Fetched with GET `uri` through `cluster`, checked against `sha256` (hex).
    Remote {
        uri: String,
        cluster: String,
        sha256: String,
        timeout: Duration,
    },
}

/// The plugin as ECDS delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSource {
    pub name: String,
    /// The plugin configuration JSON.
    pub config: String,
    pub code: CodeSource,
}

/// Decodes an `Any` of type `M`, rejecting any other type.
pub fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, String> {
    if any.type_url != M::type_url() {
        return Err(format!(
            "{} where {} was expected",
            any.type_url,
            M::full_name()
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("{}: {e}", M::full_name()))
}

/// A duration from protobuf, `default` when unset.
pub fn duration_or(
    d: Option<&envoy_types::pb::google::protobuf::Duration>,
    default: Duration,
) -> Duration {
    d.map_or(default, |d| {
        Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
    })
}

/// A cluster fleetgate emits: EDS round robin, the aggregate type, or STATIC/STRICT_DNS
/// round robin with inline endpoints.
pub fn cluster(c: &Cluster) -> Result<ClusterSpec, String> {
    let fail = |why: String| format!("cluster {:?}: {why}", c.name);
    if c.transport_socket.is_some() {
        return Err(fail(
            "upstream TLS (transport_socket) is not supported".into(),
        ));
    }
    let kind = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::ClusterType(custom)) if custom.name == AGGREGATE => {
            let config = custom
                .typed_config
                .as_ref()
                .ok_or_else(|| fail("aggregate without config".into()))?;
            ClusterKind::Aggregate(unpack::<AggregateConfig>(config).map_err(fail)?.clusters)
        }
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            return Err(fail(format!(
                "cluster type {:?} is not supported",
                custom.name
            )))
        }
        Some(ClusterDiscoveryType::Type(t)) => plain_kind(c, *t).map_err(fail)?,
        None => plain_kind(c, DiscoveryType::Static as i32).map_err(fail)?,
    };
    Ok(ClusterSpec {
        name: c.name.clone(),
        kind,
    })
}

fn plain_kind(c: &Cluster, discovery: i32) -> Result<ClusterKind, String> {
    if c.lb_policy != LbPolicy::RoundRobin as i32 {
        return Err(format!(
            "lb_policy {} is not supported (round robin only)",
            c.lb_policy
        ));
    }
    match DiscoveryType::try_from(discovery) {
        Ok(DiscoveryType::Eds) => {
            let eds = c.eds_cluster_config.as_ref();
            check_ads(eds.and_then(|e| e.eds_config.as_ref()), "eds_config")?;
            let service = eds.map(|e| e.service_name.clone()).unwrap_or_default();
            Ok(ClusterKind::Eds {
                service_name: if service.is_empty() {
                    c.name.clone()
                } else {
                    service
                },
            })
        }
        Ok(DiscoveryType::Static | DiscoveryType::StrictDns) => {
            let cla = c.load_assignment.as_ref().ok_or("no load_assignment")?;
            let all = lb_endpoints(cla)?;
            Ok(ClusterKind::Fixed(
                all.into_iter().map(|(h, p, _)| (h, p)).collect(),
            ))
        }
        other => {
            let name = other.map_or("unknown", |t| t.as_str_name());
            Err(format!(
                "discovery type {name} is not supported (EDS, STATIC, STRICT_DNS)"
            ))
        }
    }
}

/// The config source must be the ADS stream.
pub fn check_ads(source: Option<&ConfigSource>, what: &str) -> Result<(), String> {
    match source.and_then(|s| s.config_source_specifier.as_ref()) {
        Some(config_source::ConfigSourceSpecifier::Ads(_)) => Ok(()),
        _ => Err(format!(
            "{what} must be {{ads: {{}}}} (only ADS is supported)"
        )),
    }
}

/// Every endpoint of a load assignment: (host, port, health status).
fn lb_endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<(String, u16, i32)>, String> {
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        if locality.priority != 0 {
            return Err(format!(
                "priority {} is not supported (aggregate clusters order members)",
                locality.priority
            ));
        }
        for ep in &locality.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &ep.host_identifier else {
                return Err("an lb_endpoint without an endpoint address".into());
            };
            let (host, port) = socket(endpoint.address.as_ref())?;
            out.push((host, port, ep.health_status));
        }
    }
    Ok(out)
}

/// A TCP socket address with a port number.
pub fn socket(a: Option<&Address>) -> Result<(String, u16), String> {
    let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) else {
        return Err("only socket addresses are supported".into());
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
        return Err(format!("{}: a named port is not supported", sa.address));
    };
    let port = u16::try_from(port).map_err(|_| format!("port {port} out of range"))?;
    Ok((sa.address.clone(), port))
}

/// The endpoints of an EDS cluster that take new requests: HEALTHY and UNKNOWN (no health
/// checking), as Envoy routes; DRAINING, UNHEALTHY, TIMEOUT and DEGRADED get none. EDS
/// addresses must be IPs.
pub fn usable_endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<SocketAddr>, String> {
    let fail = |why: String| format!("endpoints of {:?}: {why}", cla.cluster_name);
    let usable = [HealthStatus::Healthy as i32, HealthStatus::Unknown as i32];
    let mut out = Vec::new();
    for (host, port, health) in lb_endpoints(cla).map_err(fail)? {
        let ip: IpAddr = host
            .parse()
            .map_err(|_| fail(format!("{host:?} is not an IP address")))?;
        if usable.contains(&health) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Ok(out)
}

/// The listener fleetgate emits: one filter chain with one HTTP connection manager whose
/// routes come by RDS and whose filters are the Wasm plugin by ECDS, then the router.
pub fn listener(
    l: &envoy_types::pb::envoy::config::listener::v3::Listener,
) -> Result<ListenerSpec, String> {
    let fail = |why: String| format!("listener {:?}: {why}", l.name);
    let (host, port) = socket(l.address.as_ref()).map_err(fail)?;
    let ip: IpAddr = host
        .parse()
        .map_err(|_| fail(format!("{host:?} is not an IP address")))?;
    let [chain] = l.filter_chains.as_slice() else {
        return Err(fail(format!(
            "{} filter chains (exactly one is supported)",
            l.filter_chains.len()
        )));
    };
    if chain.filter_chain_match.is_some() || chain.transport_socket.is_some() {
        return Err(fail(
            "filter chain matching and TLS are not supported".into(),
        ));
    }
    let [filter] = chain.filters.as_slice() else {
        return Err(fail(
            "exactly one network filter (the HTTP connection manager) is supported".into(),
        ));
    };
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Err(fail(format!(
            "network filter {:?} has no typed_config",
            filter.name
        )));
    };
    let hcm: HttpConnectionManager = unpack(any).map_err(fail)?;
    let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        return Err(fail("routes must come by RDS".into()));
    };
    check_ads(rds.config_source.as_ref(), "rds.config_source").map_err(fail)?;
    let plugin = http_filters(&hcm.http_filters).map_err(fail)?;
    Ok(ListenerSpec {
        name: l.name.clone(),
        addr: SocketAddr::new(ip, port),
        route_config: rds.route_config_name.clone(),
        plugin,
    })
}

/// The HTTP filters: exactly the Wasm filter by ECDS, then the router. Answers the Wasm
/// filter's name.
fn http_filters(filters: &[HttpFilter]) -> Result<String, String> {
    let mut wasm = Vec::new();
    for f in filters {
        match &f.config_type {
            Some(http_filter::ConfigType::ConfigDiscovery(ecds))
                if ecds.type_urls.iter().any(|u| *u == Wasm::type_url()) =>
            {
                check_ads(
                    ecds.config_source.as_ref(),
                    "config_discovery.config_source",
                )?;
                wasm.push(f.name.clone());
            }
            Some(http_filter::ConfigType::TypedConfig(any))
                if any.type_url == Router::type_url() => {}
            _ => return Err(unsupported_filter(f)),
        }
    }
    let router_last = filters.last().is_some_and(|f| wasm.last() != Some(&f.name));
    match wasm.as_slice() {
        [name] if filters.len() == 2 && router_last => Ok(name.clone()),
        _ => Err("HTTP filters must be one Wasm filter by ECDS, then the router".into()),
    }
}

fn unsupported_filter(f: &HttpFilter) -> String {
    let kind = match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => any.type_url.clone(),
        Some(http_filter::ConfigType::ConfigDiscovery(e)) => {
            format!("config_discovery of {:?}", e.type_urls)
        }
        None => "no config".to_owned(),
    };
    format!("HTTP filter {:?} ({kind}) is not supported (only the Wasm filter by ECDS, then envoy.filters.http.router)", f.name)
}

/// The plugin ECDS delivers: a Wasm filter whose configuration is a `StringValue` and whose
/// code is a local file, inline bytes, or a remote HTTP URI with its sha256.
pub fn plugin(ext: &TypedExtensionConfig) -> Result<PluginSource, String> {
    let fail = |why: String| format!("extension config {:?}: {why}", ext.name);
    let any = ext
        .typed_config
        .as_ref()
        .ok_or_else(|| fail("no typed_config".into()))?;
    let wasm: Wasm = unpack(any).map_err(fail)?;
    let config = wasm.config.ok_or_else(|| fail("no plugin config".into()))?;
    let Some(plugin_config::Vm::VmConfig(vm)) = config.vm else {
        return Err(fail("only an inline vm_config is supported".into()));
    };
    let configuration = match &config.configuration {
        None => String::new(),
        Some(any) => unpack::<StringValue>(any).map_err(fail)?.value,
    };
    let code = vm
        .code
        .and_then(|c| c.specifier)
        .ok_or_else(|| fail("no code".into()))?;
    Ok(PluginSource {
        name: ext.name.clone(),
        config: configuration,
        code: code_source(code).map_err(fail)?,
    })
}

fn code_source(code: async_data_source::Specifier) -> Result<CodeSource, String> {
    match code {
        async_data_source::Specifier::Local(local) => match local.specifier {
            Some(data_source::Specifier::Filename(path)) => Ok(CodeSource::File(path.into())),
            Some(data_source::Specifier::InlineBytes(bytes)) => Ok(CodeSource::Inline(bytes)),
            _ => Err("local code must be a filename or inline bytes".into()),
        },
        async_data_source::Specifier::Remote(remote) => {
            let uri = remote.http_uri.ok_or("remote code without http_uri")?;
            let Some(http_uri::HttpUpstreamType::Cluster(cluster)) = uri.http_upstream_type else {
                return Err("remote code must name its cluster".into());
            };
            if remote.sha256.is_empty() {
                return Err("remote code without sha256".into());
            }
            Ok(CodeSource::Remote {
                timeout: duration_or(uri.timeout.as_ref(), Duration::from_secs(10)),
                uri: uri.uri,
                cluster,
                sha256: remote.sha256.to_ascii_lowercase(),
            })
        }
    }
}
