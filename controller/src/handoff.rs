//! Handing the derived config to gateways:
//!
//! - the HTTP endpoint `GET /v1/config` with `ETag: "<revision>"` and long-poll: a request whose
//!   `If-None-Match` equals the current ETag waits until the config changes or `?wait=<seconds>`
//!   (default 20, max 60) elapses, then gets 304; `Authorization: Bearer <token>` is required
//!   when a token is configured (401 otherwise, nothing served);
//! - routes and state apart, for plugins that pull them so: `GET /v1/config?watch=routes`
//!   serves the same full config with the routes revision as ETag (a state-only change does not
//!   answer its long-poll), and `GET /v1/state` the state document (cluster states and ready
//!   counts) with its own revision as ETag, same token and long-poll. Plain `/v1/config` keeps
//!   its ETag on the full revision, so a plugin that only knows v1 still gets every ready count;
//! - an atomic file write (temp file in the same directory + rename);
//! - server-side apply of a Higress `WasmPlugin` whose `spec.defaultConfig` is the config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use fleetgate_plugin::config::ConfigV1;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::Api;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::watch;

/// Default and maximum long-poll wait.
pub const DEFAULT_WAIT_SECONDS: u64 = 20;
pub const MAX_WAIT_SECONDS: u64 = 60;
/// Field manager of the WasmPlugin server-side apply.
pub const FIELD_MANAGER: &str = "fleetgate-controller";

/// A config as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub revision: String,
    /// Compact JSON (shared, not copied, per response).
    pub json: bytes::Bytes,
}

#[derive(Debug, Error)]
pub enum HandoffError {
    #[error("write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("apply WasmPlugin {namespace}/{name}: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("serialize config: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the endpoints serve from one derivation.
#[derive(Debug)]
pub struct Served {
    pub config: Arc<Published>,
    /// The config's ETag under `?watch=routes`: the full revision when published without a split.
    pub routes_revision: String,
    /// The state document (`/v1/state`); `None` when published without a split.
    pub state: Option<Arc<Published>>,
}

/// The latest config, shared by the derive loop (writer) and the HTTP endpoint (readers).
#[derive(Clone)]
pub struct ConfigCell {
    tx: Arc<watch::Sender<Option<Arc<Served>>>>,
    /// Set once on shutdown: long polls answer at once so gateways re-poll another replica.
    draining: Arc<watch::Sender<bool>>,
}

impl Default for ConfigCell {
    fn default() -> Self {
        ConfigCell {
            tx: Arc::new(watch::channel(None).0),
            draining: Arc::new(watch::channel(false).0),
        }
    }
}

impl ConfigCell {
    /// Publish a config without a state document (`/v1/state` answers 404, `?watch=routes`
    /// watches the full revision); returns false (and wakes nobody) if the revision is unchanged.
    pub fn publish(&self, p: Published) -> bool {
        self.publish_served(Served {
            routes_revision: p.revision.clone(),
            state: None,
            config: Arc::new(p),
        })
    }

    /// Publish a derivation: the config, its routes revision and its state document.
    pub fn publish_derived(&self, d: &crate::derive::Derived) -> bool {
        let config = Published {
            revision: d.revision.clone(),
            json: d.json.clone(),
        };
        let state = Published {
            revision: d.split.state.revision.clone(),
            json: d.split.json.clone(),
        };
        self.publish_split(config, d.split.routes_revision.clone(), state)
    }

    /// Publish a config with its routes revision and state document.
    pub fn publish_split(
        &self,
        config: Published,
        routes_revision: String,
        state: Published,
    ) -> bool {
        self.publish_served(Served {
            config: Arc::new(config),
            routes_revision,
            state: Some(Arc::new(state)),
        })
    }

    /// The full revision covers routes and state, so an unchanged one changes nothing.
    fn publish_served(&self, s: Served) -> bool {
        self.tx.send_if_modified(|cur| {
            if cur
                .as_ref()
                .is_some_and(|c| c.config.revision == s.config.revision)
            {
                return false;
            }
            *cur = Some(Arc::new(s));
            true
        })
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().as_ref().map(|s| s.config.clone())
    }
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Served>>> {
        self.tx.subscribe()
    }
    /// Shutting down: every parked long poll answers `304` now, and new ones do not park.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }
}

/// State of the config endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub cell: ConfigCell,
    /// Expected bearer token; `None` = no authentication.
    pub token: Option<Arc<str>>,
    /// Clients currently held in a long-poll.
    pub waiting: Gauge,
}

/// The router with `GET /v1/config` and `GET /v1/state`.
pub fn router(ep: Endpoint) -> Router {
    Router::new()
        .route("/v1/config", get(get_config))
        .route("/v1/state", get(get_state))
        .with_state(ep)
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<String>,
    /// `routes`: the config with the routes revision as ETag.
    watch: Option<String>,
}

/// A document the endpoints serve, and what its ETag follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    /// The full config; ETag = its revision (any change).
    Config,
    /// The full config; ETag = the routes revision.
    Routes,
    /// The state document; ETag = its revision.
    State,
}

impl Doc {
    /// (revision, body) of this document in `s`; `None` if `s` has none.
    fn of(self, s: &Served) -> Option<(String, Bytes)> {
        match self {
            Doc::Config => Some((s.config.revision.clone(), s.config.json.clone())),
            Doc::Routes => Some((s.routes_revision.clone(), s.config.json.clone())),
            Doc::State => s
                .state
                .as_ref()
                .map(|p| (p.revision.clone(), p.json.clone())),
        }
    }
}

fn etag_of(rev: &str) -> String {
    format!("\"{rev}\"")
}

/// Does `If-None-Match` name this ETag? (`*`, lists and weak tags accepted.)
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Whether `headers` carry `Authorization: Bearer <token>` (always true without a token).
pub fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(want) = token else { return true };
    let Some(got) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time over the expected length.
    let (a, b) = (got.trim().as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_config(
    State(ep): State<Endpoint>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Response {
    let doc = match q.watch.as_deref() {
        Some("routes") => Doc::Routes,
        _ => Doc::Config,
    };
    long_poll(ep, q, headers, doc).await
}

async fn get_state(
    State(ep): State<Endpoint>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Response {
    long_poll(ep, q, headers, Doc::State).await
}

/// Serve `doc`, or hold a request that already has it until its revision changes.
async fn long_poll(ep: Endpoint, q: WaitQuery, headers: HeaderMap, doc: Doc) -> Response {
    if !authorized(&headers, ep.token.as_deref()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized\n",
        )
            .into_response();
    }
    let wait = q
        .wait
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(DEFAULT_WAIT_SECONDS)
        .min(MAX_WAIT_SECONDS);
    let mut rx = ep.cell.subscribe();
    let current = rx.borrow_and_update().clone();
    let Some(current) = current else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "no config derived yet\n",
        )
            .into_response();
    };
    let Some((revision, body)) = doc.of(&current) else {
        return (
            StatusCode::NOT_FOUND,
            "no state document: this controller publishes full configs only\n",
        )
            .into_response();
    };
    let etag = etag_of(&revision);
    if !matches_etag(&headers, &etag) {
        return doc_response(&revision, body);
    }
    // Long-poll until the revision changes, the wait elapses or the server drains.
    ep.waiting.inc();
    let _guard = DecOnDrop(ep.waiting.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut draining = ep.cell.draining.subscribe();
    loop {
        if *draining.borrow_and_update() {
            return not_modified(&etag);
        }
        let changed = tokio::select! {
            c = tokio::time::timeout_at(deadline, rx.changed()) => c,
            _ = draining.changed() => continue,
        };
        match changed {
            Ok(Ok(())) => {
                let next = rx.borrow_and_update().clone();
                let next = next.as_deref().and_then(|n| doc.of(n));
                if let Some((rev, body)) = next.filter(|(rev, _)| *rev != revision) {
                    return doc_response(&rev, body);
                }
            }
            // Timeout, or the publisher is gone: nothing new.
            Ok(Err(_)) | Err(_) => return not_modified(&etag),
        }
    }
}

struct DecOnDrop(Gauge);
impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

fn doc_response(revision: &str, body: Bytes) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, header_value(&etag_of(revision))),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn not_modified(etag: &str) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [(header::ETAG, header_value(etag))],
    )
        .into_response()
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HandoffError> {
    let err = |source| HandoffError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string());
    let tmp_name = format!(".{name}.tmp-{}", std::process::id());
    let tmp = match dir {
        Some(d) => d.join(tmp_name),
        None => Path::new(&tmp_name).to_path_buf(),
    };
    {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(&tmp).await.map_err(err)?;
        f.write_all(bytes).await.map_err(err)?;
        f.sync_all().await.map_err(err)?;
    }
    tokio::fs::rename(&tmp, path).await.map_err(err)
}

/// The Higress WasmPlugin resource.
pub fn wasmplugin_resource() -> ApiResource {
    ApiResource {
        group: "extensions.higress.io".to_string(),
        version: "v1alpha1".to_string(),
        api_version: "extensions.higress.io/v1alpha1".to_string(),
        kind: "WasmPlugin".to_string(),
        plural: "wasmplugins".to_string(),
    }
}

/// The apply body: only the fields fleetgate owns (`spec.defaultConfig`).
pub fn wasmplugin_patch(namespace: &str, name: &str, config: &ConfigV1) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"defaultConfig": config},
    })
}

/// Server-side apply `spec.defaultConfig` of a WasmPlugin (other fields stay the owner's).
pub async fn apply_wasmplugin(
    client: kube::Client,
    namespace: &str,
    name: &str,
    config: &ConfigV1,
) -> Result<(), HandoffError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &wasmplugin_resource());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(
        name,
        &pp,
        &Patch::Apply(wasmplugin_patch(namespace, name, config)),
    )
    .await
    .map_err(|source| HandoffError::Apply {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_quoted_weak_lists_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc\", \"def\""),
        );
        assert!(matches_etag(&h, "\"def\""));
        assert!(matches_etag(&h, "\"abc\""));
        assert!(!matches_etag(&h, "\"xyz\""));
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, Some("s3cret")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(&h, Some("s3cret")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&h, Some("s3cret")));
        assert!(authorized(&HeaderMap::new(), None));
    }

    #[tokio::test]
    async fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("fg-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        write_atomic(&p, b"one").await.unwrap();
        write_atomic(&p, b"two").await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
