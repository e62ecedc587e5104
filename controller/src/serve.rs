//! `serve`: the controller with YAML dumps for a cluster. It re-renders the dumps on an interval
//! and serves the result on the real config endpoint (long-poll, ETag, bearer token), so a
//! gateway can be developed and tested against the controller with no Kubernetes at hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tracing::{info, warn};

use crate::cli::{self, RenderArgs};
use crate::handoff::{self, ConfigCell, Endpoint, Published};

/// Render once and publish; a failed render keeps the last good config.
fn refresh(args: &RenderArgs, cell: &ConfigCell) {
    match cli::render(args) {
        Ok(d) => {
            for p in &d.problems {
                warn!(ingress = %p.ingress, severity = ?p.severity, "{}", p.message);
            }
            let revision = d.revision.clone();
            if cell.publish(Published {
                revision: d.revision,
                json: d.json,
            }) {
                info!(%revision, "config published");
            }
        }
        Err(e) => warn!(err = %e, "render failed; keeping the last good config"),
    }
}

/// Bind `listen`, call `bound` with the address, then serve until the process ends.
pub async fn serve_files(
    args: RenderArgs,
    listen: SocketAddr,
    token: Option<String>,
    interval: Duration,
    bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let cell = ConfigCell::default();
    refresh(&args, &cell);
    let endpoint = Endpoint {
        cell: cell.clone(),
        token: token.map(Arc::from),
        waiting: Gauge::default(),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    bound(listener.local_addr()?);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            refresh(&args, &cell);
        }
    });
    axum::serve(listener, handoff::router(endpoint)).await?;
    Ok(())
}
