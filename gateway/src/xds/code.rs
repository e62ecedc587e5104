//! The plugin's `.wasm`: read from a file, taken inline, or fetched over HTTP through the
//! cluster ECDS names and checked against its sha256; compiled off the async threads. Remote
//! and inline code is compiled once per sha256 (Envoy caches remote code the same way).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_wasm_tests::Module;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};

use super::translate::CodeSource;
use crate::upstreams::Upstreams;

/// Compiled modules by code id.
#[derive(Default)]
pub(crate) struct CodeCache(HashMap<String, Module>);

impl CodeCache {
    /// The module of `source` and its code id (path or sha256).
    pub(crate) async fn load(
        &mut self,
        source: &CodeSource,
        upstreams: &Upstreams,
    ) -> Result<(Module, String), String> {
        let id = match source {
            CodeSource::File(path) => path.display().to_string(),
            CodeSource::Inline(bytes) => sha256_hex(bytes),
            CodeSource::Remote { sha256, .. } => sha256.clone(),
        };
        if let Some(module) = self.0.get(&id) {
            return Ok((module.clone(), id));
        }
        let bytes = match source {
            CodeSource::File(path) => {
                let path = path.clone();
                let module = blocking(move || Module::from_file(&path)).await?;
                return Ok((module, id));
            }
            CodeSource::Inline(bytes) => bytes.clone(),
            CodeSource::Remote {
                uri,
                cluster,
                sha256,
                timeout,
            } => fetch(upstreams, cluster, uri, sha256, *timeout).await?,
        };
        let name = format!("wasm {id}");
        let module = blocking(move || Module::from_bytes(&name, &bytes)).await?;
        self.0.insert(id.clone(), module.clone());
        Ok((module, id))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("compiling the plugin: {e}")),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// GET `uri` from an endpoint of `cluster` (the URI's host is only the `Host` header, as in
/// Envoy's `http_uri`), answered 200 with a body whose sha256 is `sha256`.
async fn fetch(
    upstreams: &Upstreams,
    cluster: &str,
    uri: &str,
    sha256: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let fail = |why: String| format!("fetching {uri} through cluster {cluster:?}: {why}");
    let endpoint = upstreams
        .cluster(cluster)
        .and_then(|c| c.pick())
        .ok_or_else(|| fail("no such cluster or no endpoint".into()))?;
    let parsed: Uri = uri.parse().map_err(|_| fail("not a URI".into()))?;
    let path = parsed.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(format!("http://{endpoint}{path}"))
        .header(
            http::header::HOST,
            parsed.authority().map_or("", |a| a.as_str()),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| fail(e.to_string()))?;
    let client = crate::forward::upstream_client();
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_bytes().to_vec())
    };
    let body = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(fail)?;
    let got = sha256_hex(&body);
    if got != sha256 {
        return Err(fail(format!(
            "sha256 {got} does not match the expected {sha256}"
        )));
    }
    Ok(body)
}
