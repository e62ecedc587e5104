//! The router filter's job: send a request to the cluster the plugin named, attempt by attempt,
//! following the [`RetryPolicy`], and say what happened in Envoy's terms (status, response flags,
//! attempt count, the member that answered).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::retry::{self, flags, AttemptFailure, AttemptResult, RetryPolicy};
use crate::upstreams::Resolved;

/// The upstream HTTP client of one worker (its own connection pool, as an Envoy worker has).
pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// A client with the connect timeout and pool settings the gateway uses.
pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(std::time::Duration::from_secs(1)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build(connector)
}

/// A request ready to go upstream: the headers as the filter left them (pseudo-headers removed).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// A complete upstream response.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What forwarding a request came to.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The last attempt's response, if it completed.
    pub answer: Option<Answer>,
    /// Attempts made (Envoy `upstream.request_attempt_count`); 0 if no endpoint was available.
    pub attempts: u32,
    /// Response flags of the final outcome (0 on a response).
    pub flags: u64,
    /// Response flags of the failed attempts before the last one, OR-ed.
    pub retried_flags: u64,
    /// The status a client gets when no attempt completed.
    pub failure_status: u16,
    /// The plain cluster (member) of the last attempt.
    pub served_by: Option<String>,
}

/// Sends `request` to `route` with retries.
pub async fn forward(
    client: &UpstreamClient,
    route: &Resolved,
    policy: &RetryPolicy,
    request: &Outgoing,
) -> Forwarded {
    let mut tried: Vec<usize> = Vec::new();
    let mut forwarded = Forwarded {
        answer: None,
        attempts: 0,
        flags: 0,
        retried_flags: 0,
        failure_status: 503,
        served_by: None,
    };
    loop {
        let has_endpoints: Vec<bool> = route
            .priorities
            .iter()
            .map(|c| !c.endpoints().is_empty())
            .collect();
        let Some(priority) = retry::next_priority(&has_endpoints, &tried) else {
            if forwarded.attempts == 0 {
                forwarded.flags = flags::NO_HEALTHY_UPSTREAM;
            }
            return forwarded;
        };
        let cluster = &route.priorities[priority];
        let Some(endpoint) = cluster.pick() else {
            // Emptied between the check and the pick (an EDS update): treat as tried.
            tried.push(priority);
            continue;
        };
        tried.push(priority);
        forwarded.attempts += 1;
        forwarded.served_by = Some(cluster.name().to_owned());
        // A failed attempt's flag moves to `retried_flags` once another attempt follows.
        forwarded.retried_flags |= forwarded.flags;
        let result = attempt(client, endpoint, policy, request).await;
        let verdict = match &result {
            Ok(answer) => AttemptResult::Status(answer.status.as_u16()),
            Err(failure) => AttemptResult::Failed(*failure),
        };
        let retry = policy.should_retry(request.method.as_str(), forwarded.attempts, verdict);
        match result {
            Ok(answer) => {
                forwarded.flags = 0;
                let status = answer.status.as_u16();
                forwarded.answer = Some(answer);
                if !retry {
                    return forwarded;
                }
                // A retried 5xx counts as a failure of the attempt, as Envoy's outlier
                // detection sees it.
                forwarded.flags = if status == 504 {
                    flags::UPSTREAM_REQUEST_TIMEOUT
                } else {
                    flags::UPSTREAM_REMOTE_RESET
                };
            }
            Err(failure) => {
                forwarded.answer = None;
                forwarded.flags = failure.flag();
                forwarded.failure_status = failure.status();
                if !retry {
                    if forwarded.attempts > 1 {
                        forwarded.flags |= flags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                    }
                    return forwarded;
                }
            }
        }
    }
}

async fn attempt(
    client: &UpstreamClient,
    endpoint: SocketAddr,
    policy: &RetryPolicy,
    request: &Outgoing,
) -> Result<Answer, AttemptFailure> {
    let uri: Uri = format!("http://{endpoint}{}", request.path)
        .parse()
        .map_err(|_| AttemptFailure::ConnectFailure)?;
    let mut builder = Request::builder().method(request.method.clone()).uri(uri);
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in &request.headers {
            if is_hop_by_hop(name) || name == "host" {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        if let Ok(host) = HeaderValue::from_str(&request.authority) {
            headers.insert(http::header::HOST, host);
        }
    }
    let outgoing = builder
        .body(Full::new(request.body.clone()))
        .map_err(|_| AttemptFailure::ConnectFailure)?;
    let exchange = async {
        let response = client.request(outgoing).await.map_err(|error| {
            if error.is_connect() {
                AttemptFailure::ConnectFailure
            } else {
                AttemptFailure::Reset
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| AttemptFailure::Reset)?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(policy.per_try_timeout, exchange)
        .await
        .unwrap_or(Err(AttemptFailure::Timeout))
}

/// Connection-level headers a proxy does not forward.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
    )
}
