//! The ADS gRPC service: routes Envoy's two ADS methods to [`AdsServer`]. Delta ADS uses
//! prost's codec; state of the world uses [`WireCodec`], which writes each response from the
//! snapshot's pre-encoded resources ([`WireResponse`]) instead of a typed message. This is the
//! routing tonic's generated `AggregatedDiscoveryServiceServer` does, with another codec for
//! one of its methods.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstCodec, ProstDecoder};

use super::delta::DeltaMsg;
use super::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::SERVICE_NAME;
use super::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use super::server::{AdsServer, SentMsg};
use super::wire::WireResponse;

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Requests can be large (a SotW request names every subscribed resource).
const MAX_REQUEST: usize = 16 << 20;

/// [`AdsServer`] as a tonic service.
#[derive(Debug, Clone)]
pub struct AdsService(pub Arc<AdsServer>);

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let server = Arc::clone(&self.0);
        match req.uri().path() {
            SOTW => Box::pin(async move {
                let mut grpc = Grpc::new(WireCodec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.streaming(Sotw(server), req).await)
            }),
            DELTA => Box::pin(async move {
                let codec = ProstCodec::default();
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.streaming(Delta(server), req).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("not an ADS method").into_http()) }),
        }
    }
}

struct Sotw(Arc<AdsServer>);

impl StreamingService<DiscoveryRequest> for Sotw {
    type Response = WireResponse;
    type ResponseStream = ReceiverStream<SentMsg>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        ready(self.0.open_sotw(request))
    }
}

struct Delta(Arc<AdsServer>);

impl StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = super::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
    type ResponseStream = ReceiverStream<DeltaMsg>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        ready(self.0.open_delta(request))
    }
}

/// Decodes `DiscoveryRequest`s with prost; writes [`WireResponse`]s as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireCodec;

impl Codec for WireCodec {
    type Encode = WireResponse;
    type Decode = DiscoveryRequest;
    type Encoder = WireEncoder;
    type Decoder = ProstDecoder<DiscoveryRequest>;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = WireResponse;
    type Error = Status;

    fn encode(&mut self, item: WireResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // One allocation for the whole message, not a doubling buffer's copies.
        buf.reserve(item.encoded_len());
        item.encode(buf);
        Ok(())
    }
}
