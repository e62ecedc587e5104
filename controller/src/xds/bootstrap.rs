//! The minimal Envoy bootstrap that points at the controller's ADS server: the node, the admin
//! interface, ADS for clusters and listeners (everything else follows from them), and the one
//! static cluster of the controller itself.

use serde_json::{json, Value};

/// Name of the static cluster of the controller's xDS server.
pub const XDS_CLUSTER: &str = "fleetgate-xds";

/// What varies between gateways.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// `HOST:PORT` of the controller's xDS server (a DNS name or an IP).
    pub xds: String,
    pub node_id: String,
    /// Admin port, bound to 127.0.0.1.
    pub admin_port: u16,
    /// Sent as `authorization: Bearer <token>` on the ADS stream.
    pub token: Option<String>,
    /// Incremental ADS (`DELTA_GRPC`): only changed resources are sent; for large fleets.
    pub delta: bool,
    /// Reach the server over TLS (its `--xds-tls-cert`).
    pub tls: Option<BootstrapTls>,
}

/// Files on the gateway's host for TLS to the xDS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapTls {
    /// CA (PEM) the server's certificate must chain to; it must name the host of `xds` (sent
    /// as SNI when a DNS name).
    pub ca_file: String,
    /// The gateway's client certificate and key (PEM), for a server that requires them
    /// (`--xds-client-ca`).
    pub client_cert: Option<(String, String)>,
}

/// Why no bootstrap could be printed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("--xds {0:?}: want HOST:PORT")]
    Address(String),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

impl Bootstrap {
    /// The bootstrap as Envoy's proto3 JSON mapping (snake_case fields).
    pub fn to_json(&self) -> Result<Value, BootstrapError> {
        let (host, port) = self
            .xds
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| BootstrapError::Address(self.xds.clone()))?;
        let mut grpc = json!({ "envoy_grpc": { "cluster_name": XDS_CLUSTER } });
        if let Some(t) = &self.token {
            let header = json!({ "key": "authorization", "value": format!("Bearer {t}") });
            grpc["initial_metadata"] = json!([header]);
        }
        let ads = json!({ "ads": {}, "resource_api_version": "V3" });
        Ok(json!({
            "node": { "id": self.node_id, "cluster": "fleetgate" },
            "admin": { "address": socket("127.0.0.1", self.admin_port) },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": if self.delta { "DELTA_GRPC" } else { "GRPC" },
                    "transport_api_version": "V3",
                    "grpc_services": [grpc],
                },
                "cds_config": ads,
                "lds_config": ads,
            },
            "static_resources": { "clusters": [xds_cluster(host, port, self.tls.as_ref())] },
        }))
    }

    pub fn to_yaml(&self) -> Result<String, BootstrapError> {
        Ok(serde_yaml::to_string(&self.to_json()?)?)
    }
}

fn socket(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

/// The controller, over HTTP/2 (gRPC), resolved by DNS; over TLS when `tls` is set.
fn xds_cluster(host: &str, port: u16, tls: Option<&BootstrapTls>) -> Value {
    const HTTP: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            HTTP: {
                "@type": format!("type.googleapis.com/{HTTP}"),
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(host, port) } }] }],
        },
    });
    if let Some(tls) = tls {
        cluster["transport_socket"] = transport_socket(host, tls);
    }
    cluster
}

/// Envoy's upstream TLS socket: the server verified against `ca_file` by name (`host`), and
/// the client certificate when there is one.
fn transport_socket(host: &str, tls: &BootstrapTls) -> Value {
    const TLS: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    let file = |path: &str| json!({ "filename": path });
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": file(&tls.ca_file),
            "match_typed_subject_alt_names": [
                { "san_type": san_type(host), "matcher": { "exact": host } },
            ],
        },
    });
    if let Some((cert, key)) = &tls.client_cert {
        common["tls_certificates"] =
            json!([{ "certificate_chain": file(cert), "private_key": file(key) }]);
    }
    let mut config = json!({
        "@type": format!("type.googleapis.com/{TLS}"),
        "common_tls_context": common,
    });
    // SNI carries names only, never an IP address (RFC 6066).
    if san_type(host) == "DNS" {
        config["sni"] = json!(host);
    }
    json!({ "name": "envoy.transport_sockets.tls", "typed_config": config })
}

/// The subject alternative name type `host` is checked as.
fn san_type(host: &str) -> &'static str {
    if host.parse::<std::net::IpAddr>().is_ok() {
        "IP_ADDRESS"
    } else {
        "DNS"
    }
}
