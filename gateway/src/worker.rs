//! One gateway worker: a thread with a current-thread runtime and a `LocalSet`, owning one
//! Proxy-Wasm VM (a wasm-tests `Host`, which is not `Send`), its own listener clone, upstream
//! connection pool and timers, as an Envoy worker owns its Wasm instance. Every host call is
//! synchronous and made with the host's simulated clock first moved to wall time; ticks fire
//! from a real timer; HTTP callouts become real requests.

use std::cell::RefCell;
use std::collections::HashSet;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleetgate_wasm_tests::{Host, HttpCallRequest, LogLevel, Stream};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::forward::{self, Outgoing, UpstreamClient};
use crate::plugin::{self, PluginFeed};
use crate::retry::flags;
use crate::routes::RouteTable;
use crate::{GatewayLog, Shared};

/// The response header that carries the attempt count (Envoy `x-envoy-attempt-count`, sent
/// when the route sets `include_attempt_count_in_response`).
pub const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";
/// The response header naming the member cluster that answered (local gateway only).
pub const SERVED_BY_HEADER: &str = "x-fleetgate-served-by";

/// One plugin instance (VM) of this worker and the callouts it has under way.
pub(crate) struct Instance {
    host: Host,
    dispatched: RefCell<HashSet<u64>>,
}

impl Instance {
    fn new(host: Host) -> Rc<Instance> {
        Rc::new(Instance {
            host,
            dispatched: RefCell::default(),
        })
    }
}

pub(crate) struct Worker {
    index: usize,
    /// The instance new requests start on.
    current: RefCell<Rc<Instance>>,
    /// Replaced instances that requests or callouts still hold.
    retired: RefCell<Vec<Rc<Instance>>>,
    feed: RefCell<PluginFeed>,
    shared: Arc<Shared>,
    client: UpstreamClient,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        host: Host,
        feed: PluginFeed,
        shared: Arc<Shared>,
    ) -> Rc<Worker> {
        Rc::new(Worker {
            index,
            current: RefCell::new(Instance::new(host)),
            retired: RefCell::default(),
            feed: RefCell::new(feed),
            shared,
            client: forward::upstream_client(),
        })
    }

    fn current(&self) -> Rc<Instance> {
        Rc::clone(&self.current.borrow())
    }

    /// Starts an instance of a new plugin spec for new requests (an ECDS update); the old one
    /// is retired once nothing holds it. A spec that fails to start keeps the old instance.
    fn follow_plugin(&self) {
        let spec = {
            let mut feed = self.feed.borrow_mut();
            if !feed.has_changed().unwrap_or(false) {
                return;
            }
            let spec = Arc::clone(&feed.borrow_and_update());
            spec
        };
        match plugin::instantiate(&spec, self.shared.data.clone()) {
            Ok(host) => {
                let old = self.current.replace(Instance::new(host));
                self.drain_logs(&old);
                self.retired.borrow_mut().push(old);
            }
            Err(error) => {
                tracing::error!(worker = self.index, "new plugin instance: {error:#}");
            }
        }
    }

    /// Moves the host's clock (started at wall time) to wall time, firing due ticks and
    /// callout timeouts on the way: every instance of every worker reads one clock, so a time
    /// one leaves in shared data (an ejection's end, a failback timer) means the same to all.
    fn sync_clock(&self, instance: &Instance) {
        let behind = SystemTime::now().duration_since(instance.host.now());
        if let Some(behind) = behind.ok().filter(|b| !b.is_zero()) {
            if let Err(error) = instance.host.try_advance(behind) {
                tracing::error!(worker = self.index, ?error, "advancing the wasm clock");
            }
        }
    }

    /// Starts a real request for every callout the guest made that is not under way yet.
    fn dispatch_callouts(self: &Rc<Self>, instance: &Rc<Instance>) {
        let pending = instance.host.pending_http_calls();
        let mut dispatched = instance.dispatched.borrow_mut();
        dispatched.retain(|id| pending.iter().any(|call| call.id == *id));
        for call in pending {
            if dispatched.insert(call.id) {
                let callout = Rc::clone(self).callout(Rc::clone(instance), call);
                tokio::task::spawn_local(callout);
            }
        }
    }

    /// Sends the guest's log lines to the gateway's sink and forgets them (the host keeps every
    /// line otherwise, which a long-running gateway cannot afford).
    fn drain_logs(&self, instance: &Instance) {
        let lines = instance.host.logs();
        if lines.is_empty() {
            return;
        }
        instance.host.clear_logs();
        for line in lines {
            if line.level < LogLevel::Info {
                continue;
            }
            if let Some(sink) = &self.shared.log_sink {
                let _ = sink.send(GatewayLog {
                    worker: self.index,
                    level: line.level,
                    message: line.message,
                });
            } else if line.level >= LogLevel::Warn {
                tracing::warn!(worker = self.index, "{}", line.message);
            }
        }
    }

    /// The real timer: follows plugin updates and keeps the current instance's clock moving
    /// so ticks fire on time. Retired instances get no ticks (Envoy deletes a replaced
    /// plugin's root context); they only finish what they started.
    pub(crate) async fn run_timer(self: Rc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.shared.timer_resolution);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.follow_plugin();
            let current = self.current();
            self.sync_clock(&current);
            self.dispatch_callouts(&current);
            self.drain_logs(&current);
            self.retired.borrow_mut().retain(|old| {
                self.drain_logs(old);
                Rc::strong_count(old) > 1
            });
        }
    }

    async fn callout(self: Rc<Self>, instance: Rc<Instance>, call: HttpCallRequest) {
        let result = self.call_upstream(&call).await;
        self.sync_clock(&instance);
        // The host may have failed the call first (its timeout passed): then it is not pending
        // any more and answering it is an error we ignore.
        let delivered = match result {
            Some(answer) => {
                let headers: Vec<(String, String)> = answer
                    .headers
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                    .collect();
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                instance.host.try_complete_http_call(
                    call.id,
                    answer.status.as_u16(),
                    &headers,
                    &answer.body,
                )
            }
            None => instance.host.try_fail_http_call(call.id),
        };
        if let Err(error) = delivered {
            tracing::debug!(worker = self.index, ?error, "callout answer not delivered");
        }
        instance.dispatched.borrow_mut().remove(&call.id);
        self.dispatch_callouts(&instance);
    }

    async fn call_upstream(&self, call: &HttpCallRequest) -> Option<forward::Answer> {
        let cluster = self.shared.upstreams.cluster(&call.upstream)?;
        let method: Method = call.header(":method").unwrap_or("GET").parse().ok()?;
        let outgoing = Outgoing {
            method,
            path: call.header(":path").unwrap_or("/").to_owned(),
            authority: call.header(":authority").unwrap_or_default().to_owned(),
            headers: call
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: Bytes::from(call.body.clone()),
        };
        let timeout = if call.timeout.is_zero() {
            Duration::from_secs(60)
        } else {
            call.timeout
        };
        let policy = crate::RetryPolicy {
            num_retries: 0,
            per_try_timeout: timeout,
            retry_idempotent_on_errors: false,
        };
        let route = crate::upstreams::Resolved {
            priorities: vec![cluster],
        };
        let forwarded = forward::forward(&self.client, &route, &policy, &outgoing).await;
        forwarded.answer
    }

    /// Serves one downstream request: filter request phase, routing, forwarding with retries,
    /// filter response phase.
    pub(crate) async fn handle(
        self: Rc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    "cannot read the request body\n",
                ))
            }
        };
        let authority = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        // The request stays on this instance to the end, even if a new one takes over.
        let instance = self.current();
        self.sync_clock(&instance);
        let mut builder = instance
            .host
            .request()
            .method(parts.method.as_str())
            .scheme("http")
            .authority(&authority)
            .path(&path);
        for (name, value) in &parts.headers {
            if name == http::header::HOST {
                continue;
            }
            if let Ok(value) = value.to_str() {
                builder = builder.header(name.as_str(), value);
            }
        }
        if !body.is_empty() {
            builder = builder.body(body.to_vec());
        }
        let stream = match builder.try_send() {
            Ok(stream) => Live(stream),
            Err(error) => {
                tracing::error!(worker = self.index, ?error, "wasm request phase failed");
                return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "filter failed\n"));
            }
        };
        self.dispatch_callouts(&instance);
        self.shared.stats.requests.inc();

        if let Some(reply) = stream.0.local_response() {
            self.shared.stats.local_replies.inc();
            let finished = stream.0.try_finish();
            self.after_stream(&instance, finished);
            let status = StatusCode::from_u16(u16::try_from(reply.status).unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(downstream(
                status,
                &stream.0,
                Bytes::from(reply.body.clone()),
                None,
            ));
        }

        let routes = self.shared.routes.current();
        let rule = routes.rule(parts.method.as_str());
        let cluster = stream.0.request_header(&routes.cluster_header);
        let route = cluster
            .as_deref()
            .and_then(|name| self.shared.upstreams.resolve(name));
        let (Some(rule), Some(route)) = (rule, route) else {
            // Envoy: `cluster_header` missing or naming an unknown cluster -> 404 (flag NR).
            self.shared.stats.no_route.inc();
            let finished = stream
                .0
                .respond(404)
                .flags(flags::NO_ROUTE_FOUND)
                .details("cluster_not_found")
                .try_finish();
            self.after_stream(&instance, finished);
            return Ok(downstream(
                StatusCode::NOT_FOUND,
                &stream.0,
                Bytes::from_static(b"no cluster for this request\n"),
                None,
            ));
        };

        let outgoing = Outgoing {
            method: parts.method.clone(),
            path: path.clone(),
            authority: authority.clone(),
            headers: stream
                .0
                .request_headers()
                .to_vec()
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            body: Bytes::from(stream.0.request_body()),
        };
        self.mirror(&routes, &stream.0, &outgoing);
        let forwarded = forward::forward(&self.client, &route, &rule.retry, &outgoing).await;
        let stats = &self.shared.stats;
        stats
            .retries
            .add(u64::from(forwarded.attempts.saturating_sub(1)));
        self.sync_clock(&instance);
        // What the plugin's on_log reads. Envoy would report `upstream.request_attempt_count`
        // > 1 for a retried request; this host cannot set a per-stream property after the
        // request phase, so a retry is reported as the first attempt's failure flag instead,
        // which the plugin treats the same way ("the chosen upstream failed").
        let reported_flags = forwarded.flags | forwarded.retried_flags;
        let attempts = forwarded.attempts;
        let served_by = forwarded.served_by.clone();
        let (status, body, finished) = match forwarded.answer {
            Some(answer) => {
                let mut response = stream
                    .0
                    .respond(answer.status.as_u16())
                    .flags(reported_flags);
                for (name, value) in &answer.headers {
                    if forward::is_hop_by_hop(name.as_str()) {
                        continue;
                    }
                    if let Ok(value) = value.to_str() {
                        response = response.header(name.as_str(), value);
                    }
                }
                (answer.status, answer.body, response.try_finish())
            }
            None => {
                stats.upstream_failures.inc();
                let status = StatusCode::from_u16(forwarded.failure_status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let finished = stream
                    .0
                    .respond(status.as_u16())
                    .flags(reported_flags)
                    .details("upstream_reset_before_response_started")
                    .try_finish();
                let body = if forwarded.flags & flags::NO_HEALTHY_UPSTREAM != 0 {
                    Bytes::from_static(b"no healthy upstream\n")
                } else {
                    Bytes::from_static(
                        b"upstream connect error or disconnect/reset before headers\n",
                    )
                };
                (status, body, finished)
            }
        };
        self.after_stream(&instance, finished);
        let mut response = downstream(status, &stream.0, body, served_by.as_deref());
        if let Ok(value) = HeaderValue::from_str(&attempts.to_string()) {
            response.headers_mut().insert(ATTEMPT_COUNT_HEADER, value);
        }
        Ok(response)
    }

    fn after_stream(self: &Rc<Self>, instance: &Rc<Instance>, finished: anyhow::Result<()>) {
        if let Err(error) = finished {
            tracing::error!(worker = self.index, ?error, "wasm response phase failed");
        }
        self.dispatch_callouts(instance);
    }

    /// Envoy `request_mirror_policies` with `cluster_header`: a copy of the request goes to
    /// the cluster the mirror header names (fire and forget, no retries, `-shadow` appended
    /// to the authority); a missing header or unknown cluster mirrors nothing.
    fn mirror(&self, routes: &RouteTable, stream: &Stream, outgoing: &Outgoing) {
        let Some(header) = &routes.mirror_header else {
            return;
        };
        let target = stream.request_header(header);
        let Some(route) = target.and_then(|name| self.shared.upstreams.resolve(&name)) else {
            return;
        };
        let mut copy = outgoing.clone();
        copy.authority = shadow_authority(&copy.authority);
        let client = self.client.clone();
        tokio::task::spawn_local(async move {
            let policy = crate::RetryPolicy::none();
            forward::forward(&client, &route, &policy, &copy).await;
        });
    }
}

/// A stream that is ended (as "client went away") if the request future is dropped early, so
/// the VM does not keep its context forever.
struct Live(Stream);

impl Drop for Live {
    fn drop(&mut self) {
        if !self.0.finished() {
            let _ = self.0.try_finish();
        }
    }
}

/// Envoy's shadow host: `-shadow` after the host name, before any port.
fn shadow_authority(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}-shadow:{port}")
        }
        _ => format!("{authority}-shadow"),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The downstream response: the headers as the filter left them (pseudo-headers dropped).
fn downstream(
    status: StatusCode,
    stream: &Stream,
    body: Bytes,
    served_by: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in stream.response_headers().to_vec() {
        if name.starts_with(':') || forward::is_hop_by_hop(&name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(member) = served_by.and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert(SERVED_BY_HEADER, member);
    }
    response
}
