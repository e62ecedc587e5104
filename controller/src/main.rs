//! `fleetgate-controller`: wiring only (arguments, logging, the chosen command).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fleetgate_controller::cli;
use fleetgate_controller::derive::{
    DeriveOptions, DEFAULT_MIRROR_FQDN_TEMPLATE, DEFAULT_MIRROR_TEMPLATE, DEFAULT_UPSTREAM_TEMPLATE,
};
use fleetgate_controller::higress::HigressFlags;
use fleetgate_controller::run::RunConfig;

/// The same allocator the scale benchmark measures: at fleet scale the system allocator's
/// fragmentation costs about a third more resident memory and twice the derive time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use fleetgate_controller::serve::XdsServe;
use fleetgate_controller::settings::{PluginSettings, SettingsText};
use fleetgate_controller::xds::bootstrap::BootstrapTls;
use fleetgate_controller::xds::{self, Auth, Tls, WasmCode, XdsOptions};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(
    name = "fleetgate-controller",
    version,
    about = "Derives the fleetgate plugin config from fleet Ingresses and member EndpointSlices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or as JSON objects (one per line, for log collectors).
    #[arg(long, global = true, env = "FLEETGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr (stdout carries `render`/`bootstrap` output); `RUST_LOG` filters them.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[derive(Args, Clone)]
struct DeriveFlags {
    /// IngressClass handled by fleetgate.
    #[arg(long, env = "FLEETGATE_INGRESS_CLASS", default_value = "fleetgate")]
    ingress_class: String,
    /// Upstream (Envoy cluster) name template: {port} {cluster} {service} {namespace}
    /// [default: outbound|{port}|{cluster}|{service}.{namespace}.svc.cluster.local; with
    /// `run --higress`: outbound|{port}||{service}-{cluster}.{namespace}.svc.cluster.local].
    #[arg(long, env = "FLEETGATE_UPSTREAM_TEMPLATE")]
    upstream_template: Option<String>,
    /// Mirror upstream template (same placeholders, {cluster} is empty).
    #[arg(long, env = "FLEETGATE_MIRROR_TEMPLATE", default_value = DEFAULT_MIRROR_TEMPLATE)]
    mirror_upstream_template: String,
    /// Mirror upstream template for `mirror-target-fqdn`: {port} {host}.
    #[arg(long, env = "FLEETGATE_MIRROR_FQDN_TEMPLATE", default_value = DEFAULT_MIRROR_FQDN_TEMPLATE)]
    mirror_fqdn_template: String,
    /// Request header the plugin sets to the chosen upstream; must be the header the gateway's
    /// routes use (Envoy `cluster_header`).
    #[arg(long, env = "FLEETGATE_CLUSTER_HEADER")]
    cluster_header: Option<String>,
    /// Request header the plugin sets to the mirror upstream.
    #[arg(long, env = "FLEETGATE_MIRROR_HEADER")]
    mirror_header: Option<String>,
    /// Response header the plugin sets to explain its decision.
    #[arg(long, env = "FLEETGATE_DECISION_HEADER")]
    decision_header: Option<String>,
    /// Default for routes without `fleetgate.io/when-unavailable`: `reject` or `panic`.
    #[arg(long, env = "FLEETGATE_WHEN_UNAVAILABLE")]
    when_unavailable: Option<String>,
    /// Passive health as a JSON object of the plugin's `passive_health` fields.
    #[arg(long, env = "FLEETGATE_PASSIVE_HEALTH")]
    passive_health: Option<String>,
}

impl DeriveFlags {
    /// The options; every plugin setting is checked by the plugin's own validation.
    fn options(&self) -> Result<DeriveOptions> {
        let text = SettingsText {
            cluster_header: self.cluster_header.clone(),
            mirror_header: self.mirror_header.clone(),
            decision_header: self.decision_header.clone(),
            when_unavailable: self.when_unavailable.clone(),
            passive_health: self.passive_health.clone(),
        };
        let settings = text
            .apply(&PluginSettings::default())
            .map_err(|e| anyhow::anyhow!("plugin settings: {e}"))?;
        Ok(DeriveOptions {
            ingress_class: self.ingress_class.clone(),
            class_is_default: false,
            upstream_template: (self.upstream_template.clone())
                .unwrap_or_else(|| DEFAULT_UPSTREAM_TEMPLATE.to_string()),
            mirror_template: self.mirror_upstream_template.clone(),
            mirror_fqdn_template: self.mirror_fqdn_template.clone(),
            settings,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the fleet cluster (in-cluster or current kubeconfig).
    Run(Box<RunFlags>),
    /// Print the plugin config derived from YAML dumps (no cluster needed).
    Render(DumpFlags),
    /// Serve the config derived from YAML dumps on the config endpoint, re-reading them on an
    /// interval (no cluster needed: local development and tests). Prints `listening on ADDR` (and `xds listening on ADDR`).
    Serve(Box<ServeFlags>),
    /// Print a minimal Envoy bootstrap that takes everything else from the controller's xDS.
    Bootstrap {
        /// The controller's xDS address, `HOST:PORT` (a DNS name or an IP).
        #[arg(long)]
        xds: String,
        /// Envoy's node id (logged by the controller; every node gets the same resources).
        #[arg(long, default_value = "fleetgate-gateway")]
        node_id: String,
        /// Port of Envoy's admin interface (bound to 127.0.0.1).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        /// Bearer token Envoy sends to the xDS server (the controller's --xds-token).
        #[arg(long, env = "FLEETGATE_XDS_TOKEN", hide_env_values = true)]
        xds_token: Option<String>,
        /// Incremental (delta) ADS: only changed resources are sent (large fleets).
        #[arg(long)]
        delta: bool,
        /// Reach the xDS server over TLS, its certificate checked against this CA (PEM file
        /// on the gateway's host) for the host of --xds.
        #[arg(long)]
        xds_ca: Option<String>,
        /// The gateway's client certificate (PEM file), for a server with --xds-client-ca.
        #[arg(long, requires_all = ["xds_ca", "xds_client_key"])]
        xds_client_cert: Option<String>,
        /// The key of --xds-client-cert (PEM file).
        #[arg(long, requires = "xds_client_cert")]
        xds_client_key: Option<String>,
    },
    /// Show what the plugin would do with a request (the plugin's own engine).
    Explain {
        /// A plugin config JSON file (e.g. `render` output).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "")]
        host: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// The request method (routes may be limited to one).
        #[arg(long, default_value = "GET")]
        method: String,
        /// `name: value` request header (repeatable).
        #[arg(short = 'H', long = "header", value_parser = cli::split_header)]
        headers: Vec<(String, String)>,
        /// Run N requests and count where they go.
        #[arg(long)]
        simulate: Option<u32>,
        /// Seed of the random source.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// What if: `CLUSTER=STATE[,...]`, STATE one of healthy, degraded, unknown, down
        /// (the controller's view) or ejected (passive health); repeatable.
        #[arg(long = "state", value_parser = cli::split_states)]
        states: Vec<Vec<(String, String)>>,
    },
}

#[derive(Args)]
struct ServeFlags {
    #[command(flatten)]
    dumps: DumpFlags,
    /// Address of the config endpoint (`GET /v1/config`); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    token: TokenFlags,
    /// How often the dumps are re-read.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    #[command(flatten)]
    xds: XdsFlags,
}

/// YAML dumps of the fleet and of each member.
#[derive(Args)]
struct DumpFlags {
    /// Directory of fleet objects (Ingresses, IngressClasses, Argo CD cluster Secrets);
    /// repeatable, merged.
    #[arg(long, required = true)]
    fleet: Vec<PathBuf>,
    /// NAME=DIR: a member and its EndpointSlice dump (repeatable).
    #[arg(long = "member", value_parser = cli::split_pair)]
    members: Vec<(String, String)>,
    /// NAME=ZONE: a member's zone (overrides the Secret's).
    #[arg(long = "zone", value_parser = cli::split_pair)]
    zones: Vec<(String, String)>,
    #[command(flatten)]
    derive: DeriveFlags,
}

impl DumpFlags {
    fn args(self) -> Result<cli::RenderArgs> {
        Ok(cli::RenderArgs {
            fleet: self.fleet,
            members: self
                .members
                .into_iter()
                .map(|(k, v)| (k, PathBuf::from(v)))
                .collect(),
            zones: self.zones,
            options: self.derive.options()?,
        })
    }
}

/// The ADS (xDS) server: Envoy takes its clusters, endpoints, listener, routes and the plugin
/// from it.
#[derive(Args, Clone)]
struct XdsFlags {
    /// Serve ADS (gRPC) on this address; no xDS when unset.
    #[arg(long, env = "FLEETGATE_XDS_LISTEN")]
    xds_listen: Option<SocketAddr>,
    /// Bearer token the gateway must send (gRPC metadata `authorization: Bearer ...`).
    #[arg(long, env = "FLEETGATE_XDS_TOKEN", hide_env_values = true)]
    xds_token: Option<String>,
    /// Serve xDS without a token or client certificates on a non-loopback address.
    #[arg(long)]
    insecure_xds: bool,
    /// Serve xDS over TLS with this certificate chain (PEM; with --xds-tls-key).
    #[arg(long, env = "FLEETGATE_XDS_TLS_CERT", requires = "xds_tls_key")]
    xds_tls_cert: Option<PathBuf>,
    /// The private key of --xds-tls-cert (PEM).
    #[arg(long, env = "FLEETGATE_XDS_TLS_KEY", requires = "xds_tls_cert")]
    xds_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "FLEETGATE_XDS_CLIENT_CA", requires = "xds_tls_cert")]
    xds_client_ca: Option<PathBuf>,
    /// Address of the gateway listener the xDS resources describe.
    #[arg(long, default_value = "0.0.0.0:8080")]
    gateway_listen: SocketAddr,
    /// Path of the plugin's .wasm on the gateway's host.
    #[arg(long, default_value = "/etc/envoy/fleetgate_plugin.wasm")]
    wasm_file: PathBuf,
    /// `http://` URI the gateway fetches the .wasm from instead (with --wasm-sha256, or
    /// --wasm-serve when the URI is this controller's `/v1/plugin.wasm`).
    #[arg(long)]
    wasm_uri: Option<String>,
    /// SHA-256 (hex) of the .wasm at --wasm-uri.
    #[arg(long, requires = "wasm_uri", conflicts_with = "wasm_serve")]
    wasm_sha256: Option<String>,
    /// Serve this .wasm at `/v1/plugin.wasm` on the config endpoint (its SHA-256 is computed);
    /// --wasm-uri is the URL the gateway reaches it at.
    #[arg(long, requires = "wasm_uri")]
    wasm_serve: Option<PathBuf>,
    /// Members each aggregate cluster lists, its own first (default: 1 + the route's retries).
    #[arg(long)]
    xds_failover_members: Option<usize>,
}

impl XdsFlags {
    fn resolve(self, derive: &DeriveOptions) -> Result<Option<XdsServe>> {
        let Some(listen) = self.xds_listen else {
            return Ok(None);
        };
        let mut served = None;
        let wasm = match (self.wasm_uri, self.wasm_sha256, self.wasm_serve) {
            (Some(uri), Some(sha256), _) => WasmCode::Remote { uri, sha256 },
            (Some(uri), None, Some(path)) => {
                let bytes = read(&path)?;
                let sha256 = format!("{:x}", Sha256::digest(&bytes));
                served = Some(bytes.into());
                WasmCode::Remote { uri, sha256 }
            }
            (Some(_), None, None) => {
                anyhow::bail!("--wasm-uri needs --wasm-sha256 or --wasm-serve")
            }
            (None, ..) => WasmCode::File(self.wasm_file),
        };
        let mut options = XdsOptions::new(derive, self.gateway_listen, wasm);
        if let Some(n) = self.xds_failover_members {
            options.failover_members = n;
        }
        let tls = match (self.xds_tls_cert, self.xds_tls_key) {
            (Some(cert), Some(key)) => Some(Tls {
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
                client_ca_pem: self.xds_client_ca.as_deref().map(read).transpose()?,
            }),
            _ => None,
        };
        Ok(Some(XdsServe {
            listen,
            auth: Auth::with_tls(listen, self.xds_token, tls, self.insecure_xds)?,
            options,
            wasm: served,
        }))
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

/// The config endpoint's bearer token.
#[derive(Args)]
struct TokenFlags {
    /// Bearer token required on the config endpoint.
    #[arg(long, env = "FLEETGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token (trailing whitespace ignored).
    #[arg(long, env = "FLEETGATE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve the config endpoint without a token.
    #[arg(long)]
    insecure_no_token: bool,
}

impl TokenFlags {
    /// The token, or an error if none is set and `--insecure-no-token` was not given.
    fn resolve(&self) -> Result<Option<String>> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("token file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if token.as_deref().is_none_or(str::is_empty) && !self.insecure_no_token {
            anyhow::bail!("set --token, --token-file or FLEETGATE_TOKEN (or --insecure-no-token)");
        }
        Ok(token.filter(|t| !t.is_empty()))
    }
}

#[derive(Args)]
struct RunFlags {
    #[command(flatten)]
    derive: DeriveFlags,
    /// YAML list of members: `- {name, kubeconfig, zone}`.
    #[arg(long, env = "FLEETGATE_MEMBERS_FILE")]
    members_file: Option<PathBuf>,
    /// Namespace of Argo CD cluster Secrets to take members from ("" = none).
    #[arg(long, env = "FLEETGATE_SECRETS_NAMESPACE", default_value = "argocd")]
    secrets_namespace: String,
    /// Seconds a member's watch may fail before the member is `unknown`.
    #[arg(long, env = "FLEETGATE_GRACE_SECONDS", default_value_t = 30)]
    grace_seconds: u64,
    /// Address of the config endpoint (`GET /v1/config`).
    #[arg(long, env = "FLEETGATE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "FLEETGATE_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    #[command(flatten)]
    token: TokenFlags,
    /// Also write the config to this file (atomically) on every change.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Server-side apply `spec.defaultConfig` of this Higress WasmPlugin (`namespace/name`).
    #[arg(long, value_parser = parse_ns_name)]
    wasmplugin: Option<(String, String)>,
    /// IP or hostname written to `status.loadBalancer` of our Ingresses.
    #[arg(long, env = "FLEETGATE_STATUS_ADDRESS")]
    status_address: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", default_value = "fleetgate-system")]
    lease_namespace: String,
    #[arg(long, default_value = "fleetgate-controller")]
    lease_name: String,
    #[command(flatten)]
    higress: HigressFlags,
    /// This replica's identity in the Lease (defaults to the hostname / pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[command(flatten)]
    xds: XdsFlags,
}

fn parse_ns_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() => Ok((ns.to_string(), n.to_string())),
        _ => Err(format!("{s:?} is not namespace/name")),
    }
}

fn run_config(f: RunFlags) -> Result<RunConfig> {
    let token = f.token.resolve()?;
    let identity = f
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("fleetgate-{}", std::process::id()));
    let mut derive = f.derive.options()?;
    let template = f.derive.upstream_template.as_deref();
    derive.upstream_template = (f.higress).upstream_template(template, &derive.upstream_template);
    let higress = (f.higress.options(&derive.upstream_template)).map_err(anyhow::Error::msg)?;
    Ok(RunConfig {
        xds: f.xds.resolve(&derive)?,
        derive,
        higress,
        members_file: f.members_file,
        secrets_namespace: Some(f.secrets_namespace).filter(|s| !s.is_empty()),
        grace: Duration::from_secs(f.grace_seconds),
        listen: f.listen,
        admin_listen: f.admin_listen,
        token,
        out: f.out,
        wasmplugin: f.wasmplugin,
        status_address: f.status_address,
        lease_namespace: f.lease_namespace,
        lease_name: f.lease_name,
        identity,
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Run(flags) => {
            let cfg = run_config(*flags)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(fleetgate_controller::run::run(cfg))?;
        }
        Command::Serve(flags) => {
            let ServeFlags {
                dumps,
                listen,
                token,
                interval_ms,
                xds,
            } = *flags;
            let token = token.resolve()?;
            let args = dumps.args()?;
            let xds = xds.resolve(&args.options)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(fleetgate_controller::serve::serve_files(
                args,
                listen,
                token,
                Duration::from_millis(interval_ms.max(10)),
                xds,
                |addr, xds_addr| {
                    use std::io::Write;
                    println!("listening on {addr}");
                    if let Some(a) = xds_addr {
                        println!("xds listening on {a}");
                    }
                    let _ = std::io::stdout().flush();
                },
            ))?;
        }
        Command::Bootstrap {
            xds,
            node_id,
            admin_port,
            xds_token,
            delta,
            xds_ca,
            xds_client_cert,
            xds_client_key,
        } => {
            let tls = xds_ca.map(|ca_file| BootstrapTls {
                ca_file,
                client_cert: xds_client_cert.zip(xds_client_key),
            });
            let b = xds::bootstrap::Bootstrap {
                xds,
                node_id,
                admin_port,
                token: xds_token,
                delta,
                tls,
            };
            print!("{}", b.to_yaml()?);
        }
        Command::Render(dumps) => {
            let args = dumps.args()?;
            let derived = cli::render(&args).context("render")?;
            for p in &derived.problems {
                eprintln!(
                    "warning: Ingress {} ({:?}): {}",
                    p.ingress, p.severity, p.message
                );
            }
            print!("{}", cli::pretty(&derived)?);
        }
        Command::Explain {
            config,
            host,
            path,
            method,
            headers,
            simulate,
            seed,
            json,
            states,
        } => {
            let args = cli::ExplainArgs {
                config,
                host,
                path,
                method,
                headers,
                simulate,
                seed,
                states: states.into_iter().flatten().collect(),
            };
            match simulate {
                Some(n) => {
                    let sim = cli::simulate(&args, n).context("explain")?;
                    if json {
                        println!("{}", serde_json::to_string(&sim)?);
                    } else {
                        println!("{}", serde_json::to_string_pretty(&sim)?);
                    }
                }
                None => {
                    let e = cli::explain(&args).context("explain")?;
                    if json {
                        println!("{}", serde_json::to_string(&e)?);
                    } else {
                        print!("{}", cli::format_explanation(&e));
                    }
                }
            }
        }
    }
    Ok(())
}
