//! Health `Watch` streams: at most `max_watch_streams` open at once across
//! all connections, and each ended when a drain starts.
//!
//! `grpc.health.v1.Health/Watch` is open to everyone (probes need no token)
//! and gives each caller a stream that lasts until the caller leaves, so
//! without a bound a client could hold any number of them (up to
//! `http2_max_concurrent_streams` on each of its connections). A `Watch`
//! takes a slot before the health service sees it and gives it back when its
//! response body is gone; one that finds no free slot is answered
//! `RESOURCE_EXHAUSTED` at once. `Check`, a short unary call, is not limited
//! here: probes keep working whatever the watchers do. (Both count against
//! their connection's `max_probe_calls_per_connection`, in `connections.rs`,
//! which other connections' probes never feel.)
//!
//! On shutdown the server waits for open calls before it closes connections,
//! and a `Watch` never ends by itself: each would hold its connection open
//! for the whole grace period. So its body is [`EndsAtDrain`]: once the
//! drain starts (health has turned NOT_SERVING by then), a `Watch` sends
//! what it still has to say, that status change included, and then ends
//! with `UNAVAILABLE`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::Status;
use tower::{Layer, Service};

use super::drain::EndsAtDrain;
use crate::service::metrics;

/// The path of the health service's streaming method.
pub const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// Adds [`WatchLimited`] around the health service.
#[derive(Clone, Debug)]
pub struct WatchLimitLayer {
    slots: Arc<Semaphore>,
    limit: usize,
    draining: CancellationToken,
}

impl WatchLimitLayer {
    /// At most `limit` `Watch` streams at once, each ended once `draining` is cancelled.
    pub fn new(limit: usize, draining: CancellationToken) -> Self {
        WatchLimitLayer {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            draining,
        }
    }
}

impl<S> Layer<S> for WatchLimitLayer {
    type Service = WatchLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WatchLimited {
            inner,
            layer: self.clone(),
        }
    }
}

/// The health service behind [`WatchLimitLayer`].
#[derive(Clone, Debug)]
pub struct WatchLimited<S> {
    inner: S,
    layer: WatchLimitLayer,
}

impl<S: NamedService> NamedService for WatchLimited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for WatchLimited<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != WATCH_PATH {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.layer.slots.clone().try_acquire_owned() else {
            metrics::rejected("watch_streams");
            let status = Status::resource_exhausted(format!(
                "too many health Watch streams: {} already open (max_watch_streams); use Check, or retry later",
                self.layer.limit
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let slot = WatchSlot::new(permit);
        let draining = self.layer.draining.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Body::new(EndsAtDrain::new(body, &draining, slot))))
        })
    }
}

/// A `Watch` stream's slot, and its place in `keyfilter_watch_streams_open`.
struct WatchSlot {
    _permit: OwnedSemaphorePermit,
}

impl WatchSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::watch_streams_delta(1.0);
        WatchSlot { _permit: permit }
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        metrics::watch_streams_delta(-1.0);
    }
}
