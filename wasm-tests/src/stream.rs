//! One HTTP exchange through the filter: [`Request`] builds and sends it (context creation,
//! `on_request_headers`, `on_request_body`), [`Stream`] reads what the filter did, and
//! [`Response`] plays the upstream's answer (sets `response.code`/`response.flags`, runs the
//! response callbacks) and ends the stream (`on_done`, `on_log`, `on_delete`).

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{bail, Context as _};
use proxy_wasm_host::abi::v0_2_1::types::{Action, StreamType};
use proxy_wasm_host::abi::v0_2_1::{CallScope, ContextId, GuestError, StreamKind};

use crate::exchange::{Exchange, SentReply};
use crate::headers::Headers;
use crate::host::{Host, Inner, VmId};
use crate::properties;

/// A local response the filter sent instead of proxying (`send_http_response`).
pub type LocalReply = SentReply;

/// A request being built; `send` runs it through the filter.
#[must_use = "a request does nothing until it is sent"]
pub struct Request<'h> {
    host: &'h Host,
    vm: VmId,
    method: String,
    scheme: String,
    authority: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    pseudo_headers: bool,
    body: Option<Vec<u8>>,
    properties: Vec<(Vec<String>, Vec<u8>)>,
}

impl<'h> Request<'h> {
    pub(crate) fn new(host: &'h Host) -> Self {
        Self {
            host,
            vm: VmId::FIRST,
            method: "GET".to_owned(),
            scheme: "https".to_owned(),
            authority: "example.com".to_owned(),
            path: "/".to_owned(),
            headers: Vec::new(),
            pseudo_headers: true,
            body: None,
            properties: Vec::new(),
        }
    }

    /// The VM (worker) that serves the request (default: the first).
    pub fn vm(mut self, vm: VmId) -> Self {
        self.vm = vm;
        self
    }
    /// `:method` (default `GET`).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_owned();
        self
    }
    /// `:scheme` (default `https`).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_owned();
        self
    }
    /// `:authority` (default `example.com`).
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_owned();
        self
    }
    /// `:path`, query included (default `/`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }
    /// Adds a request header (names are lower-cased, as Envoy does).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }
    /// Adds a request header with a raw (possibly non-UTF-8) value.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }
    /// Sends no pseudo-headers at all (`:authority`, `:path`, `:method`, `:scheme`).
    pub fn without_pseudo_headers(mut self) -> Self {
        self.pseudo_headers = false;
        self
    }
    /// A request body, delivered in one `on_request_body` with end of stream.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// A property this stream alone reads (dotted path), over the host-wide ones.
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties
            .push((properties::dotted(path), value.into()));
        self
    }

    /// Runs the request through the filter; panics if the guest fails.
    pub fn send(self) -> Stream {
        self.try_send()
            .unwrap_or_else(|error| panic!("sending the request failed: {error:#}"))
    }

    /// Creates the stream context and runs `on_request_headers` (end of stream unless a body
    /// follows) and `on_request_body`. The body is skipped if the filter sent a local response.
    pub fn try_send(self) -> anyhow::Result<Stream> {
        self.host.check_vm(self.vm)?;
        let mut inner = self.host.inner.borrow_mut();
        let inner = &mut *inner;
        let mut exchange = inner.root_exchange();
        let headers = &mut exchange.request_headers;
        if self.pseudo_headers {
            headers.push(":authority", &self.authority);
            headers.push(":path", &self.path);
            headers.push(":method", &self.method);
            headers.push(":scheme", &self.scheme);
        }
        for (name, value) in &self.headers {
            headers.push_bytes(name, value);
        }
        derive_request_properties(&mut exchange, &self, inner.clock.now_nanos());
        for (path, value) in self.properties {
            exchange.properties.set(&path, value);
        }
        let index = self.vm.0;
        let root = inner.vms[index].root;
        let header_count = wire(exchange.request_headers.count());
        let body = self.body;
        let (result, exchange) =
            inner.vms[index]
                .guest
                .with(exchange, |scope| -> Result<ContextId, GuestError> {
                    let context = scope.on_context_create(Some(root))?;
                    scope.expect_stream_kind(context, StreamKind::Http)?;
                    let action = scope.on_request_headers(context, header_count, body.is_none())?;
                    scope.stream_mut().record.request_headers_action = Some(action);
                    if let Some(body) = body {
                        if scope.stream().record.local_reply.is_none() {
                            let length = wire(body.len());
                            scope.stream_mut().request_body = body;
                            let action = scope.on_request_body(context, length, true)?;
                            scope.stream_mut().record.request_body_action = Some(action);
                        }
                    }
                    Ok(context)
                });
        let context = result
            .with_context(|| format!("request {} {} on VM {index}", self.method, self.path))?;
        inner.streams.insert((index, context), exchange);
        inner.sync_tick(index);
        Ok(Stream {
            host: Rc::clone(&self.host.inner),
            vm: index,
            context,
            finished: RefCell::new(false),
        })
    }
}

/// Envoy's request attributes, derived from the pseudo-headers.
fn derive_request_properties(exchange: &mut Exchange, request: &Request<'_>, now_nanos: u64) {
    let (url_path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let time = i64::try_from(now_nanos).unwrap_or(i64::MAX);
    let set = |exchange: &mut Exchange, name: &str, value: Vec<u8>| {
        exchange.properties.set(&["request", name], value)
    };
    set(exchange, "path", properties::string(&request.path));
    set(exchange, "url_path", properties::string(url_path));
    set(exchange, "query", properties::string(query));
    set(exchange, "host", properties::string(&request.authority));
    set(exchange, "method", properties::string(&request.method));
    set(exchange, "scheme", properties::string(&request.scheme));
    set(exchange, "protocol", properties::string("HTTP/1.1"));
    set(exchange, "time", properties::int(time));
    if let Some(id) = exchange.request_headers.get_str("x-request-id") {
        set(exchange, "id", properties::string(&id));
    }
}

/// A request in flight (or finished): what the filter did to it.
pub struct Stream {
    host: Rc<RefCell<Inner>>,
    vm: usize,
    context: ContextId,
    finished: RefCell<bool>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("vm", &self.vm)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Stream {
    fn read<R>(&self, read: impl FnOnce(&Exchange) -> R) -> R {
        let inner = self.host.borrow();
        let exchange = inner
            .streams
            .get(&(self.vm, self.context))
            .unwrap_or_else(|| panic!("stream {} on VM {} has no state", self.context, self.vm));
        read(exchange)
    }

    /// The VM that serves this stream.
    pub fn vm(&self) -> VmId {
        VmId(self.vm)
    }

    /// What `on_request_headers` answered.
    pub fn action(&self) -> Action {
        self.read(|exchange| {
            exchange
                .record
                .request_headers_action
                .unwrap_or(Action::Continue)
        })
    }

    /// What `on_request_body` answered, if it ran.
    pub fn body_action(&self) -> Option<Action> {
        self.read(|exchange| exchange.record.request_body_action)
    }

    /// What `on_response_headers` answered, if it ran.
    pub fn response_action(&self) -> Option<Action> {
        self.read(|exchange| exchange.record.response_headers_action)
    }

    /// Whether the request is held: a callback paused it and the filter has not resumed it.
    pub fn paused(&self) -> bool {
        self.read(|exchange| {
            let record = &exchange.record;
            let paused = record.request_headers_action == Some(Action::Pause)
                || record.request_body_action == Some(Action::Pause);
            paused && !record.resumed.contains(&StreamType::HttpRequest)
        })
    }

    /// Whether the filter resumed the request (`proxy_continue_stream(HTTP_REQUEST)`).
    pub fn resumed(&self) -> bool {
        self.read(|exchange| exchange.record.resumed.contains(&StreamType::HttpRequest))
    }

    /// Whether the filter reset the request or response (`proxy_close_stream`).
    pub fn reset(&self) -> bool {
        self.read(|exchange| !exchange.record.reset.is_empty())
    }

    /// A request header as the filter left it (what Envoy's router would see).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.read(|exchange| exchange.request_headers.get_str(name))
    }

    /// All request headers as the filter left them.
    pub fn request_headers(&self) -> Headers {
        self.read(|exchange| exchange.request_headers.clone())
    }

    /// A response header as the filter left it.
    pub fn response_header(&self, name: &str) -> Option<String> {
        self.read(|exchange| exchange.response_headers.get_str(name))
    }

    /// All response headers as the filter left them.
    pub fn response_headers(&self) -> Headers {
        self.read(|exchange| exchange.response_headers.clone())
    }

    /// The request body as the filter left it.
    pub fn request_body(&self) -> Vec<u8> {
        self.read(|exchange| exchange.request_body.clone())
    }

    /// The local response the filter sent, if any.
    pub fn local_response(&self) -> Option<LocalReply> {
        self.read(|exchange| exchange.record.local_reply.clone())
    }

    /// How many times the filter called the `clear_route_cache` foreign function successfully.
    pub fn route_cache_clears(&self) -> u32 {
        self.read(|exchange| exchange.record.route_cache_clears)
    }

    /// The names of every foreign function the filter called, known or not.
    pub fn foreign_calls(&self) -> Vec<String> {
        self.read(|exchange| exchange.record.foreign_calls.clone())
    }

    /// A property of this stream (including those the filter set with `set_property`).
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        self.read(|exchange| {
            exchange
                .properties
                .get(&properties::dotted(path))
                .map(<[u8]>::to_vec)
        })
    }

    /// Whether the stream has ended (`on_delete` ran).
    pub fn finished(&self) -> bool {
        *self.finished.borrow()
    }

    /// Starts the upstream's response with status `code`.
    pub fn respond(&self, code: u16) -> Response<'_> {
        Response {
            stream: self,
            code,
            flags: 0,
            details: "via_upstream".to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Ends the stream without an upstream response. If the filter sent a local response, the
    /// response callbacks run on it first (Envoy passes local replies through the encoder
    /// filters); otherwise the client went away. Then `on_done`, `on_log`, `on_delete`.
    pub fn finish(&self) {
        self.try_finish()
            .unwrap_or_else(|error| panic!("finishing the stream failed: {error:#}"));
    }

    /// [`Stream::finish`], answering guest failures as errors.
    pub fn try_finish(&self) -> anyhow::Result<()> {
        match self.local_response() {
            Some(reply) => {
                let headers = reply
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let code = u16::try_from(reply.status).unwrap_or(500);
                let body = (!reply.body.is_empty()).then_some(reply.body);
                self.run_response(code, 0, "local_reply", headers, body)
            }
            None => self.run_response_phase(None),
        }
    }

    fn run_response(
        &self,
        code: u16,
        flags: u64,
        details: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        self.run_response_phase(Some(ResponsePlan {
            code,
            flags,
            details: details.to_owned(),
            headers,
            body,
        }))
    }

    fn run_response_phase(&self, plan: Option<ResponsePlan>) -> anyhow::Result<()> {
        if self.finished() {
            bail!(
                "stream {} on VM {} has already finished",
                self.context,
                self.vm
            );
        }
        let mut inner = self.host.borrow_mut();
        let inner = &mut *inner;
        let key = (self.vm, self.context);
        let exchange = inner
            .streams
            .remove(&key)
            .with_context(|| format!("stream {} has no state", self.context))?;
        let context = self.context;
        let (result, exchange) =
            inner.vms[self.vm]
                .guest
                .with(exchange, |scope| -> Result<Vec<_>, GuestError> {
                    if let Some(plan) = plan {
                        respond(scope, context, plan)?;
                    }
                    if !scope.on_done(context)? {
                        return Ok(Vec::new());
                    }
                    scope.on_log(context)?;
                    scope.on_delete(context)
                });
        inner.streams.insert(key, exchange);
        let ended = result.with_context(|| format!("stream {} on VM {}", self.context, self.vm))?;
        inner.callouts.forget(inner.vms[self.vm].guest.id(), &ended);
        inner.sync_tick(self.vm);
        *self.finished.borrow_mut() = true;
        Ok(())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if *self.finished.borrow() {
            if let Ok(mut inner) = self.host.try_borrow_mut() {
                inner.streams.remove(&(self.vm, self.context));
            }
        }
    }
}

struct ResponsePlan {
    code: u16,
    flags: u64,
    details: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn respond(
    scope: &mut CallScope<'_, Exchange>,
    context: ContextId,
    plan: ResponsePlan,
) -> Result<(), GuestError> {
    let exchange = scope.stream_mut();
    exchange
        .response_headers
        .push(":status", &plan.code.to_string());
    for (name, value) in &plan.headers {
        exchange.response_headers.push(name, value);
    }
    exchange
        .properties
        .set(&["response", "code"], properties::int(i64::from(plan.code)));
    exchange
        .properties
        .set(&["response", "flags"], properties::uint(plan.flags));
    exchange.properties.set(
        &["response", "code_details"],
        properties::string(&plan.details),
    );
    let count = wire(exchange.response_headers.count());
    let action = scope.on_response_headers(context, count, plan.body.is_none())?;
    scope.stream_mut().record.response_headers_action = Some(action);
    if let Some(body) = plan.body {
        let length = wire(body.len());
        scope.stream_mut().response_body = body;
        scope.on_response_body(context, length, true)?;
    }
    Ok(())
}

/// The upstream's response being built; `finish` runs it through the filter and ends the stream.
#[must_use = "a response does nothing until it is finished"]
pub struct Response<'s> {
    stream: &'s Stream,
    code: u16,
    flags: u64,
    details: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Response<'_> {
    /// Envoy's `response.flags` bitmask (e.g. 0x1 = UF upstream connection failure).
    pub fn flags(mut self, flags: u64) -> Self {
        self.flags = flags;
        self
    }
    /// `response.code_details` (default `via_upstream`).
    pub fn details(mut self, details: &str) -> Self {
        self.details = details.to_owned();
        self
    }
    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// A response body, delivered in one `on_response_body` with end of stream.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// Runs `on_response_headers` (and body), then `on_done`, `on_log`, `on_delete`.
    pub fn finish(self) {
        self.try_finish()
            .unwrap_or_else(|error| panic!("finishing the response failed: {error:#}"));
    }
    /// [`Response::finish`], answering guest failures as errors.
    pub fn try_finish(self) -> anyhow::Result<()> {
        if self.stream.local_response().is_some() {
            bail!("the filter sent a local response; end the stream with Stream::finish instead");
        }
        self.stream.run_response(
            self.code,
            self.flags,
            &self.details,
            self.headers,
            self.body,
        )
    }
}

/// A count or length as the ABI carries it (u32; test inputs never come near the limit).
fn wire(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}
