//! A local gateway for development and tests (not a production proxy): the `fleetgate-wasm-tests`
//! Proxy-Wasm host serving real HTTP/1.1 on loopback, doing what Envoy does around the fleetgate
//! plugin:
//!
//! - one VM per worker thread, as Envoy clones the Wasm instance per worker; all workers' VMs
//!   share one shared-data store, as Envoy workers do;
//! - routing by the cluster header the plugin sets (Envoy `cluster_header`: a missing header or
//!   an unknown cluster answers 404), retries per route ([`RetryPolicy`]: a failed attempt is
//!   retried on another member), mirroring by a mirror header;
//! - clusters from a shared [`Upstreams`] table (plain clusters with round-robin endpoints, and
//!   aggregate clusters [preferred member, others]);
//! - the outcome reported to the plugin's `on_log` as `response.code` and `response.flags`;
//! - a real clock (each instance's simulated clock starts at wall time and is moved to wall
//!   time before every call, so all instances read one clock, as in Envoy), real ticks, and
//!   `dispatch_http_call` as real HTTP requests to the named cluster.
//!
//! It is configured one of two ways:
//!
//! - **by xDS** ([`XdsGateway`], what the local fleet runs): given only the ADS address and a
//!   node id, it subscribes to CDS, EDS, LDS, RDS and ECDS (state of the world), ACKs what it
//!   applied and NACKs (with `error_detail`) what it cannot do, keeping its last good state;
//! - **directly** ([`Gateway::start`] with a [`GatewayConfig`]): module, plugin config, clusters
//!   and one retry policy handed over in code (unit tests and the controller's pull test).
//!
//! ```no_run
//! use fleetgate_local_gateway::{XdsGateway, XdsGatewayConfig};
//! let ads = "127.0.0.1:18000".parse().unwrap();
//! let gateway = XdsGateway::start(XdsGatewayConfig::new(ads, "gateway-1")).unwrap();
//! println!("listening on {}", gateway.addr());
//! gateway.shutdown().unwrap();
//! ```
//!
//! # Differences from Envoy
//!
//! Data path:
//! - request and response bodies are buffered whole; the response phase of the filter
//!   (`on_response_headers` through `on_log`) runs once the upstream response is complete;
//! - a retried request is reported as a failure flag of the first attempt rather than as
//!   `upstream.request_attempt_count` (see `worker.rs`);
//! - no outlier detection, circuit breakers or connect-timeout setting (1 s): passive health
//!   is the plugin's job; endpoints are picked round robin, `load_balancing_weight` and
//!   locality are ignored; the route `timeout` only serves as the default per-try timeout;
//! - a mirrored request is fire and forget with no retries (as Envoy's shadow), `-shadow`
//!   appended to the authority.
//!
//! xDS (the subset fleetgate emits; anything else is NACKed with a message naming the
//! resource and what is unsupported):
//! - state of the world only (no delta); a response with one bad resource is NACKed whole and
//!   changes nothing (Envoy applies a CDS or LDS response's valid resources);
//! - exactly one listener: one filter chain, the HTTP connection manager with routes by RDS
//!   over ADS and the HTTP filters [Wasm by ECDS, router]. Its address may be overridden
//!   locally ([`XdsGatewayConfig::listen_override`]: tests use ephemeral ports; port 0 binds
//!   one, as in Envoy); a running gateway NACKs a moved listener instead of rebinding;
//! - clusters: EDS, STATIC and STRICT_DNS (round robin, no TLS) and `envoy.clusters.aggregate`;
//!   STRICT_DNS names are resolved once per CDS update, not every `dns_refresh_rate`; EDS
//!   endpoints must be IPs at priority 0; HEALTHY and UNKNOWN endpoints take new requests,
//!   DRAINING, UNHEALTHY, TIMEOUT and DEGRADED none (Envoy falls back to DEGRADED hosts when
//!   too few are healthy); a new EDS cluster takes traffic once its endpoints arrive (warming);
//! - routes: one virtual host for `*`, prefix `/` routes told apart by an optional `:method`
//!   matcher (exact or `A|B|C`), `cluster_header` routing, at most one mirror by
//!   `cluster_header`; retries need `connect-failure` and `previous_priorities`, may add
//!   `reset` with `gateway-error` (codes 502-504) on GET|HEAD|OPTIONS routes only;
//!   `previous_hosts` and `host_selection_retry_max_attempts` are implied by moving member;
//! - the plugin by ECDS: an inline `vm_config` whose code is a file, inline bytes, or a
//!   `remote` HTTP URI fetched through the named cluster and checked against its sha256
//!   (cached by sha256, fetched without retries); the runtime name, `vm_id` and
//!   `failure_policy` are ignored (wasmtime runs every VM). A new plugin is first checked in
//!   a VM of its own: one that refuses its configuration is NACKed. Each worker then starts a
//!   new VM (Envoy reuses the VM when only the configuration changed and starts a new root
//!   context; either way the plugin's in-VM state is new and shared data is kept) on its next
//!   timer tick (within `timer_resolution`, 10 ms) for new requests; requests under way finish
//!   on the old one, which gets no more ticks. An unchanged plugin is not restarted;
//! - the ADS stream is plaintext without credentials (loopback), and is reopened 200 ms after
//!   it breaks with the subscriptions and last accepted versions.

mod forward;
pub mod plugin;
pub mod retry;
pub mod routes;
pub mod upstreams;
mod worker;
pub mod xds;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use fleetgate_wasm_tests::{LogLevel, Module};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

pub use plugin::{PluginFeed, PluginSpec};
pub use retry::RetryPolicy;
pub use routes::{RouteRule, RouteTable, Routes};
pub use upstreams::Upstreams;
pub use worker::{ATTEMPT_COUNT_HEADER, SERVED_BY_HEADER};
pub use xds::{XdsGateway, XdsGatewayConfig, XdsStatus};

/// A log line a worker's VM wrote (level Info and above).
#[derive(Debug, Clone)]
pub struct GatewayLog {
    pub worker: usize,
    pub level: LogLevel,
    pub message: String,
}

/// How to run a gateway.
pub struct GatewayConfig {
    /// Address to listen on (port 0 = any free port).
    pub listen: SocketAddr,
    /// Worker threads, each with its own VM.
    pub workers: usize,
    /// The filter.
    pub module: Module,
    /// The plugin configuration (`PLUGIN_CONFIGURATION`).
    pub plugin_config: String,
    /// The request header the route reads the cluster from (Envoy `cluster_header`).
    pub cluster_header: String,
    /// The clusters.
    pub upstreams: Upstreams,
    /// The route's retry policy.
    pub retry: RetryPolicy,
    /// How often the clock is moved and due ticks fire when no request comes.
    pub timer_resolution: Duration,
    /// Where the VMs' log lines go (Info and above); without it, Warn and above go to `tracing`.
    pub log_sink: Option<mpsc::Sender<GatewayLog>>,
}

impl GatewayConfig {
    /// Two workers on an ephemeral loopback port, cluster header `x-fleetgate-upstream`, the
    /// Envoy example's retry policy.
    pub fn new(module: Module, plugin_config: impl Into<String>, upstreams: Upstreams) -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 2,
            module,
            plugin_config: plugin_config.into(),
            cluster_header: "x-fleetgate-upstream".to_owned(),
            upstreams,
            retry: RetryPolicy::default(),
            timer_resolution: Duration::from_millis(10),
            log_sink: None,
        }
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    fn inc(&self) {
        self.add(1);
    }
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters over all workers.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Requests that entered the filter.
    pub requests: Counter,
    /// Local replies the filter sent (e.g. 503 no healthy cluster).
    pub local_replies: Counter,
    /// Requests with no (known) cluster header: 404.
    pub no_route: Counter,
    /// Retries (attempts after the first).
    pub retries: Counter,
    /// Requests where no attempt produced a response.
    pub upstream_failures: Counter,
}

/// What the workers share.
pub(crate) struct Shared {
    pub(crate) routes: Routes,
    pub(crate) upstreams: Upstreams,
    pub(crate) timer_resolution: Duration,
    pub(crate) stats: Arc<GatewayStats>,
    pub(crate) log_sink: Option<mpsc::Sender<GatewayLog>>,
    /// One shared-data store for every worker's VM, as in one Envoy process: one worker's
    /// passive-health evidence protects all, and one worker holds the config-pull lease.
    pub(crate) data: fleetgate_wasm_tests::SharedData,
}

/// What a gateway runs, whoever configured it (the direct constructor or xDS).
pub(crate) struct Parts {
    pub(crate) listen: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) routes: Routes,
    pub(crate) upstreams: Upstreams,
    pub(crate) plugin: PluginFeed,
    pub(crate) timer_resolution: Duration,
    pub(crate) log_sink: Option<mpsc::Sender<GatewayLog>>,
}

/// A running gateway; stops when shut down or dropped.
pub struct Gateway {
    addr: SocketAddr,
    stats: Arc<GatewayStats>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Binds the listener and starts the workers; returns once every VM accepted its config.
    pub fn start(config: GatewayConfig) -> anyhow::Result<Gateway> {
        let spec = PluginSpec::new(config.module, config.plugin_config);
        // The sender may go: workers keep the last spec.
        let (_, plugin) = watch::channel(Arc::new(spec));
        Gateway::launch(Parts {
            listen: config.listen,
            workers: config.workers,
            routes: Routes::new(RouteTable::single(&config.cluster_header, config.retry)),
            upstreams: config.upstreams,
            plugin,
            timer_resolution: config.timer_resolution,
            log_sink: config.log_sink,
        })
    }

    pub(crate) fn launch(parts: Parts) -> anyhow::Result<Gateway> {
        // One listening socket per worker on the same port (SO_REUSEPORT): the kernel spreads
        // connections across workers, as Envoy's per-worker listeners do.
        let workers = parts.workers.max(1);
        let mut listeners = vec![reuseport_listener(parts.listen)?];
        let addr = listeners[0].local_addr()?;
        for _ in 1..workers {
            listeners.push(reuseport_listener(addr)?);
        }
        let stats = Arc::new(GatewayStats::default());
        let shared = Arc::new(Shared {
            routes: parts.routes,
            upstreams: parts.upstreams,
            timer_resolution: parts.timer_resolution,
            stats: Arc::clone(&stats),
            log_sink: parts.log_sink,
            data: fleetgate_wasm_tests::SharedData::new(),
        });
        let (shutdown, _) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let mut threads = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let feed = parts.plugin.clone();
            let shared = Arc::clone(&shared);
            let shutdown = shutdown.subscribe();
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    if let Err(error) = run_worker(index, listener, feed, shared, shutdown, &ready)
                    {
                        let _ = ready.send(Err(error));
                    }
                })?;
            threads.push(thread);
        }
        drop(ready_tx);
        let gateway = Gateway {
            addr,
            stats,
            shutdown,
            threads,
        };
        for _ in 0..gateway.threads.len() {
            ready_rx
                .recv()
                .map_err(|_| anyhow!("a gateway worker exited during start-up"))??;
        }
        Ok(gateway)
    }

    /// Where the gateway listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway's counters.
    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// Stops accepting, ends the workers and waits for their threads.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let mut panicked = false;
        for thread in self.threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        if panicked {
            return Err(anyhow!("a gateway worker panicked"));
        }
        Ok(())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn reuseport_listener(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn run_worker(
    index: usize,
    listener: std::net::TcpListener,
    mut feed: PluginFeed,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    ready: &mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        // Marked seen: a newer spec is picked up by the worker's timer.
        let spec = Arc::clone(&feed.borrow_and_update());
        let host = plugin::instantiate(&spec, shared.data.clone())
            .with_context(|| format!("worker {index}"))?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let worker = worker::Worker::new(index, host, feed, shared);
        tokio::task::spawn_local(Rc::clone(&worker).run_timer(shutdown.clone()));
        let _ = ready.send(Ok(()));
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(worker = index, ?error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = tcp.set_nodelay(true);
            let worker = Rc::clone(&worker);
            let mut conn_shutdown = shutdown.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |request| Rc::clone(&worker).handle(request));
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    _ = connection => {}
                    _ = conn_shutdown.changed() => {}
                }
            });
        }
        Ok(())
    })
}
