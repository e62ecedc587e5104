//! `serve`: the controller with YAML dumps for a cluster. It re-renders the dumps on an interval
//! and serves the result on the real config endpoint (long-poll, ETag, bearer token), and, when
//! asked, as xDS resources on an ADS server, so a gateway can be developed and tested against
//! the controller with no Kubernetes at hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::{self, RenderArgs};
use crate::handoff::{self, ConfigCell, Endpoint, Published};
use crate::xds::{self, Auth, Snapshot, XdsOptions};

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

type SnapshotTx = watch::Sender<Option<Arc<Snapshot>>>;

/// Render once and publish; a failed render (or invalid xDS resources) keeps the last good
/// config and snapshot.
fn refresh(args: &RenderArgs, cell: &ConfigCell, xds: Option<(&XdsOptions, &SnapshotTx)>) {
    let (d, members) = match cli::render_with_members(args) {
        Ok(r) => r,
        Err(e) => return warn!(err = %e, "render failed; keeping the last good config"),
    };
    for p in &d.problems {
        warn!(ingress = %p.ingress, severity = ?p.severity, "{}", p.message);
    }
    if let Some((opts, tx)) = xds {
        match xds::build(&d, &members, opts) {
            Ok(r) if xds::publish(tx, Snapshot::new(&r)) => info!("xDS snapshot published"),
            Ok(_) => {}
            Err(e) => warn!(err = %e, "xDS resources invalid; keeping the last good snapshot"),
        }
    }
    let revision = d.revision.clone();
    if cell.publish(Published {
        revision: d.revision,
        json: d.json,
    }) {
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
    let cell = ConfigCell::default();
    let (snapshots, rx) = watch::channel(None);
    let xds_opts = xds.as_ref().map(|x| x.options.clone());
    let mut router = handoff::router(endpoint_of(&cell, token));
    if let Some(bytes) = xds.as_ref().and_then(|x| x.wasm.clone()) {
        // Unauthenticated like any package download: Envoy's remote fetch sends no token, and
        // the SHA-256 in the plugin's config is what it trusts.
        router = router.route(WASM_PATH, axum::routing::get(move || async move { bytes }));
    }
    refresh(&args, &cell, xds_opts.as_ref().map(|o| (o, &snapshots)));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let mut xds_addr = None;
    if let Some(x) = xds {
        let l = tokio::net::TcpListener::bind(x.listen).await?;
        xds_addr = Some(l.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = xds::serve(l, rx, x.auth).await {
                warn!(err = %e, "xDS server stopped");
            }
        });
    }
    bound(listener.local_addr()?, xds_addr);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            refresh(&args, &cell, xds_opts.as_ref().map(|o| (o, &snapshots)));
        }
    });
    axum::serve(listener, router).await?;
    Ok(())
}

fn endpoint_of(cell: &ConfigCell, token: Option<String>) -> Endpoint {
    Endpoint {
        cell: cell.clone(),
        token: token.map(Arc::from),
        waiting: Gauge::default(),
    }
}
