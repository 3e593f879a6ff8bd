//! Per-call context: a request id (taken from `x-request-id` or generated),
//! echoed in the response metadata, and a tracing span carrying the RPC path,
//! the peer address and the id, around everything the call logs.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use tonic::codegen::http::{Extensions, HeaderValue, Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;

/// Header carrying the request id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// Adds [`RequestContext`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestContextLayer;

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RequestContext<S> {
    inner: S,
}

/// The caller's address, as tonic records it for plaintext and TLS connections.
pub(crate) fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

fn usable_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_string())
}

impl<S, B, RB> Service<Request<B>> for RequestContext<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(usable_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let peer = peer_addr(request.extensions())
            .map(|p| p.to_string())
            .unwrap_or_default();
        let span = tracing::info_span!("rpc", path = %request.uri().path(), request_id = %id, peer = %peer);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let mut response = future.await?;
                if let Ok(value) = HeaderValue::from_str(&id) {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
