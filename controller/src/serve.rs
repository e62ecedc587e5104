//! `serve`: the controller with YAML dumps for a cluster. It re-renders the dumps on an interval
//! and serves the result on the real config endpoint (long-poll, ETag, bearer token), and, when
//! asked, as xDS resources on an ADS server, so a gateway can be developed and tested against
//! the controller with no Kubernetes at hand. The same port answers `/healthz`, `/readyz` (ready
//! once a render was published) and `/metrics` (the controller's metrics, `fleetgate_xds_*`
//! included; render failures count as `fleetgate_errors_total{kind="render"}`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::{self, Admin, Metrics};
use crate::cli::{self, RenderArgs};
use crate::endpoints::MemberIndex;
use crate::handoff::{self, ConfigCell, Endpoint};
use crate::xds::feed::{self, Feed};
use crate::xds::{AdsServer, Auth, XdsOptions};

/// Path the plugin's `.wasm` is served at (for `vm_config.code.remote`).
pub const WASM_PATH: &str = "/v1/plugin.wasm";

/// The ADS server of `serve`.
#[derive(Debug, Clone)]
pub struct XdsServe {
    pub listen: SocketAddr,
    pub auth: Auth,
    pub options: XdsOptions,
    /// The `.wasm` to serve at [`WASM_PATH`] on the config endpoint (its URI and SHA-256 are
    /// in `options.wasm`).
    pub wasm: Option<axum::body::Bytes>,
}

/// `router` serving the `.wasm` at [`WASM_PATH`] when `xds` has one to serve.
pub fn wasm_route(router: axum::Router, xds: Option<&XdsServe>) -> axum::Router {
    match xds.and_then(|x| x.wasm.clone()) {
        // Unauthenticated like any package download: Envoy's remote fetch sends no token, and
        // the SHA-256 in the plugin's config is what it trusts.
        Some(bytes) => router.route(WASM_PATH, axum::routing::get(move || async move { bytes })),
        None => router,
    }
}

/// What [`refresh`] keeps between renders.
#[derive(Default)]
struct Rendered {
    /// Member indexes, updated in place by each render (their change logs say what moved).
    indexes: BTreeMap<String, Arc<MemberIndex>>,
    /// The last render error, logged once rather than on every re-read.
    failed: Option<String>,
}

/// What a render publishes to.
#[derive(Clone)]
struct Outputs {
    cell: ConfigCell,
    xds: Option<Feed>,
    admin: Admin,
}

/// Render once and publish; the xDS snapshot follows on the builder task. A failed render (or
/// invalid xDS resources) keeps the last good config and snapshot.
fn refresh(args: &RenderArgs, out: &Outputs, state: &mut Rendered) {
    let (cell, metrics) = (&out.cell, &out.admin.metrics);
    let (d, members) = match cli::render_onto(args, &mut state.indexes) {
        Ok(r) => r,
        Err(e) => {
            metrics.error("render");
            let e = e.to_string();
            if state.failed.as_ref() != Some(&e) {
                warn!(err = %e, "render failed; keeping the last good config");
            }
            state.failed = Some(e);
            return;
        }
    };
    state.failed = None;
    // Problems are part of what a revision says: report them once per new revision.
    if cell.current().is_none_or(|c| c.revision != d.revision) {
        for p in &d.problems {
            warn!(ingress = %p.ingress, severity = ?p.severity, "{}", p.message);
        }
    }
    let revision = d.revision.clone();
    let changed = cell.publish_derived(&d);
    metrics.observe_published(&d, changed);
    out.admin.ready.store(true, Ordering::Relaxed);
    if let Some(feed) = &out.xds {
        feed.offer(d, members);
    }
    if changed {
        info!(%revision, "config published");
    }
}

/// Bind `listen` (and the xDS address), call `bound` with the addresses, then serve until the
/// process ends.
pub async fn serve_files(
    args: RenderArgs,
    listen: SocketAddr,
    token: Option<String>,
    interval: Duration,
    xds: Option<XdsServe>,
    bound: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> anyhow::Result<()> {
    let (snapshots, rx) = watch::channel(None);
    let metrics = Metrics::default();
    let out = Outputs {
        cell: ConfigCell::default(),
        xds: (xds.as_ref()).map(|x| feed::spawn(x.options.clone(), snapshots, metrics.xds.clone())),
        admin: Admin {
            metrics: metrics.clone(),
            ready: Arc::new(AtomicBool::new(false)),
        },
    };
    let endpoint = endpoint_of(&out.cell, token, &metrics);
    let router =
        wasm_route(handoff::router(endpoint), xds.as_ref()).merge(admin::router(out.admin.clone()));
    let mut state = Rendered::default();
    refresh(&args, &out, &mut state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let mut xds_addr = None;
    if let Some(x) = xds {
        let l = tokio::net::TcpListener::bind(x.listen).await?;
        xds_addr = Some(l.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = AdsServer::new(rx, x.auth, metrics.xds).serve(l).await {
                warn!(err = %e, "xDS server stopped");
            }
        });
    }
    bound(listener.local_addr()?, xds_addr);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        // A slow re-read delays the next one instead of bunching them up.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let args = Arc::new(args);
        loop {
            tick.tick().await;
            // Reading and deriving is blocking work: off the threads that serve requests.
            let (args, out) = (Arc::clone(&args), out.clone());
            let again = tokio::task::spawn_blocking(move || {
                refresh(&args, &out, &mut state);
                state
            });
            match again.await {
                Ok(s) => state = s,
                Err(e) => return warn!(err = %e, "re-reading the dumps panicked; stopped"),
            }
        }
    });
    axum::serve(listener, router).await?;
    Ok(())
}

fn endpoint_of(cell: &ConfigCell, token: Option<String>, metrics: &Metrics) -> Endpoint {
    Endpoint {
        cell: cell.clone(),
        token: token.map(Arc::from),
        waiting: metrics.handoff_waiting.clone(),
    }
}
