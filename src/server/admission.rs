//! Admission: at most `max_concurrent_requests` KeyFilter calls in progress,
//! open `Filter` streams included, and with `max_calls_per_connection` set,
//! at most that many of them on one connection.
//!
//! A call takes a slot before its request is read and gives it back when its
//! response body is gone: for a unary call once the answer is sent, for a
//! `Filter` stream when the stream ends. (tower's `ConcurrencyLimit` frees its
//! slot when the response *headers* are ready, so streams were not counted.)
//! A call that finds no free slot is answered `RESOURCE_EXHAUSTED` at once,
//! without reading its request. Health checks and reflection sit outside this
//! layer and are never shed.
//!
//! The share per connection keeps one connection (one client channel, or a
//! runaway loop on it) from taking every slot with slow calls: another
//! connection always finds `max_concurrent_requests - max_calls_per_connection`
//! slots it cannot take. A call over its connection's share is refused the
//! same way, before it takes a slot. The count lives in [`ConnectionCalls`],
//! which `connections::CallsLayer` puts in each request's extensions.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::Status;
use tower::{Layer, Service};

use crate::service::CLIENT_RESET;

/// Adds [`Admitted`] around a service.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    limit: usize,
    per_connection: usize,
}

impl AdmissionLayer {
    /// Admits at most `limit` calls at once, and at most `per_connection`
    /// of them on one connection (0: no share per connection).
    pub fn new(limit: usize, per_connection: usize) -> Self {
        AdmissionLayer {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            per_connection,
        }
    }
}

/// The KeyFilter calls admitted on one connection and still in progress,
/// shared by the connection's calls.
#[derive(Clone, Debug, Default)]
pub struct ConnectionCalls(Arc<AtomicUsize>);

impl ConnectionCalls {
    /// One more call on the connection, unless it has `limit` already.
    pub(crate) fn take(&self, limit: usize) -> Option<ConnectionCall> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |calls| {
                (calls < limit).then_some(calls + 1)
            })
            .ok()
            .map(|_| ConnectionCall(self.0.clone()))
    }
}

/// One admitted call's place in its connection's share, until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionCall(Arc<AtomicUsize>);

impl Drop for ConnectionCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct Admitted<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Admitted<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let per_connection = self.layer.per_connection;
        let on_connection = match request.extensions().get::<ConnectionCalls>() {
            Some(calls) if per_connection > 0 => match calls.take(per_connection) {
                Some(call) => Some(call),
                None => {
                    crate::service::metrics::rejected("calls_per_connection");
                    let status = Status::resource_exhausted(format!(
                        "this connection already has {per_connection} calls in progress, open Filter streams included \
                         (max_calls_per_connection); retry when one ends, or use another connection"
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            },
            _ => None,
        };
        let Ok(slot) = self.layer.slots.clone().try_acquire_owned() else {
            // Counted apart from requests_total: a shed call never reached a handler.
            crate::service::metrics::load_shed();
            let status = Status::resource_exhausted(format!(
                "server overloaded: {} calls already in progress, open Filter streams included (max_concurrent_requests); retry later",
                self.layer.limit
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let call = self
            .inner
            .call(request.map(|body| Body::new(ResetIsNotTheEnd { inner: body })));
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| {
                Body::new(HoldingBody {
                    inner: body,
                    _held: (slot, on_connection),
                })
            }))
        })
    }
}

/// A response body that holds `G` (a call's slot) until the body is
/// dropped, that is until the response, a `Filter` stream's included, is over.
struct HoldingBody<G> {
    inner: Body,
    _held: G,
}

impl<G: Unpin> HttpBody for HoldingBody<G> {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body on which a client's reset stays an error.
///
/// tonic reads a request body that fails with `CANCELLED` (what an
/// RST_STREAM CANCEL becomes) as a clean end of the requests, so a `Filter`
/// stream the client abandoned half way would finish as if the client had
/// half-closed, and be logged and counted as a success with answers missing.
/// Here that failure becomes `ABORTED` with [`CLIENT_RESET`], which tonic
/// passes on: the stream ends as cancelled, never as OK.
struct ResetIsNotTheEnd {
    inner: Body,
}

impl HttpBody for ResetIsNotTheEnd {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) if status.code() == tonic::Code::Cancelled => {
                Poll::Ready(Some(Err(Status::aborted(CLIENT_RESET))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_takes_at_most_its_share_and_gets_it_back() {
        let calls = ConnectionCalls::default();
        let first = calls.take(2).expect("room for a first call");
        let second = calls.clone().take(2).expect("clones count together: room for a second");
        assert!(calls.take(2).is_none(), "a third call over a share of 2");
        drop(first);
        let third = calls.take(2).expect("an ended call gives its place back");
        drop((second, third));
        assert_eq!(calls.0.load(Ordering::Acquire), 0);
    }
}
