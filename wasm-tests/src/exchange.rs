//! The stream state lent to the guest for one HTTP exchange (or for a root context's callbacks):
//! Envoy-like header maps and bodies, properties (host-wide ones plus this stream's), the
//! `clear_route_cache` foreign function, and a record of what the guest asked of the proxy
//! (local response, resumes, resets).

use std::sync::Arc;

use proxy_wasm_host::abi::v0_2_1::types::{Action, BufferType, MapType, Status, StreamType};
use proxy_wasm_host::abi::v0_2_1::{Access, ForeignCall, Invocation, LocalResponse, StreamState};
use proxy_wasm_host::{Buffer, HeaderMap};

use crate::faults::{FaultSwitch, ORACLE};
use crate::headers::Headers;
use crate::properties::{self, Properties};

/// What the host answers for foreign functions, as configured by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForeignFunctions {
    /// Envoy >= 1.33 knows `clear_route_cache`; older ones answer `NOT_FOUND`.
    pub(crate) clear_route_cache: bool,
}

/// A local response the guest sent (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    /// The HTTP status.
    pub status: u32,
    /// The status details string.
    pub details: String,
    /// The headers the guest gave, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The gRPC status, if the guest gave one.
    pub grpc_status: Option<u32>,
}

impl SentReply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) route_cache_clears: u32,
    pub(crate) local_reply: Option<SentReply>,
    pub(crate) resumed: Vec<StreamType>,
    pub(crate) reset: Vec<StreamType>,
    pub(crate) foreign_calls: Vec<String>,
    pub(crate) request_headers_action: Option<Action>,
    pub(crate) request_body_action: Option<Action>,
    pub(crate) response_headers_action: Option<Action>,
}

#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) request_headers: Headers,
    pub(crate) request_body: Vec<u8>,
    pub(crate) request_trailers: Headers,
    pub(crate) response_headers: Headers,
    pub(crate) response_body: Vec<u8>,
    pub(crate) response_trailers: Headers,
    host_properties: Arc<Properties>,
    pub(crate) properties: Properties,
    foreign: ForeignFunctions,
    faults: FaultSwitch,
    pub(crate) record: Record,
}

impl Exchange {
    pub(crate) fn new(
        host_properties: Arc<Properties>,
        foreign: ForeignFunctions,
        faults: FaultSwitch,
    ) -> Self {
        Self {
            request_headers: Headers::new(),
            request_body: Vec::new(),
            request_trailers: Headers::new(),
            response_headers: Headers::new(),
            response_body: Vec::new(),
            response_trailers: Headers::new(),
            host_properties,
            properties: Properties::default(),
            foreign,
            faults,
            record: Record::default(),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl StreamState for Exchange {
    fn header_map(
        &mut self,
        _: Invocation,
        _: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpRequestTrailers => Ok(&mut self.request_trailers),
            MapType::HttpResponseHeaders => Ok(&mut self.response_headers),
            MapType::HttpResponseTrailers => Ok(&mut self.response_trailers),
            _ => Err(Status::BadArgument),
        }
    }

    fn buffer(
        &mut self,
        _: Invocation,
        _: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        match buffer {
            BufferType::HttpRequestBody => Ok(&mut self.request_body),
            BufferType::HttpResponseBody => Ok(&mut self.response_body),
            _ => Err(Status::NotFound),
        }
    }

    fn continue_stream(&mut self, _: Invocation, stream: StreamType) -> Result<(), Status> {
        self.record.resumed.push(stream);
        Ok(())
    }

    fn close_stream(&mut self, _: Invocation, stream: StreamType) -> Result<(), Status> {
        self.record.reset.push(stream);
        Ok(())
    }

    fn send_local_response(
        &mut self,
        _: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        self.record.local_reply = Some(SentReply {
            status: response.status_code,
            details: text(&response.status_code_details),
            headers: response
                .headers
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            body: response.body.to_vec(),
            grpc_status: response.grpc_status,
        });
        Ok(())
    }

    fn property(
        &mut self,
        call: Invocation,
        path: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        if path == [ORACLE.as_slice()] {
            return Err(self.faults.answer(call.callback));
        }
        let key = properties::key(path);
        let value = self
            .properties
            .get_key(&key)
            .or_else(|| self.host_properties.get_key(&key))
            .ok_or(Status::NotFound)?;
        out.extend_from_slice(value);
        Ok(())
    }

    fn set_property(&mut self, _: Invocation, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        // Envoy stores guest-set properties as filter state and answers OK.
        self.properties.set(path, value.to_vec());
        Ok(())
    }

    fn call_foreign_function(
        &mut self,
        _: Invocation,
        request: ForeignCall<'_>,
        _: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let name = text(&request.name);
        self.record.foreign_calls.push(name.clone());
        match name.as_str() {
            "clear_route_cache" if self.foreign.clear_route_cache => {
                self.record.route_cache_clears += 1;
                Ok(())
            }
            _ => Err(Status::NotFound),
        }
    }
}
