//! Shutdown: streams that end when the drain starts, and connections that
//! can be cut once the grace period is over.
//!
//! On shutdown the server stops accepting calls and waits for the open ones
//! before it closes connections. Streams that never end by themselves (a
//! health `Watch`, a reflection stream a tool keeps open) would each hold
//! their connection for the whole grace period, so their response bodies are
//! [`EndsAtDrain`]: once the drain starts, such a stream sends what it still
//! has to say and ends with `UNAVAILABLE`. KeyFilter calls are left to
//! finish. After the grace period every connection still open is aborted,
//! so open calls really end (tonic runs each connection as its own task,
//! which returning from `serve` alone would not stop): [`DrainableStream`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::Status;
use tower::{Layer, Service};

/// A streaming response body that ends the stream with `UNAVAILABLE` once the
/// drain has started and it has nothing left to send; holds `G` (a slot, or
/// `()`) until dropped.
pub struct EndsAtDrain<G> {
    inner: Body,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Whether this body ended the stream itself (with its trailers sent).
    ended: bool,
    _held: G,
}

impl<G> EndsAtDrain<G> {
    /// `inner`, ended once `draining` is cancelled.
    pub fn new(inner: Body, draining: &CancellationToken, held: G) -> Self {
        EndsAtDrain {
            inner,
            draining: Box::pin(draining.clone().cancelled_owned()),
            ended: false,
            _held: held,
        }
    }
}

impl<G: Unpin> HttpBody for EndsAtDrain<G> {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // The stream first: what it had to say before the drain started (a
        // health `Watch`'s NOT_SERVING) is ready by now, and goes out first.
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            return polled;
        }
        if self.draining.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.ended = true;
        let mut trailers = HeaderMap::new();
        let ended = Status::unavailable("the server is shutting down").add_header(&mut trailers);
        Poll::Ready(Some(ended.map(|()| Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Makes every response body of a service [`EndsAtDrain`] (for reflection,
/// whose one method is a stream a tool may keep open for as long as it likes).
#[derive(Clone, Debug)]
pub struct EndAtDrainLayer {
    draining: CancellationToken,
}

impl EndAtDrainLayer {
    /// Streams end once `draining` is cancelled.
    pub fn new(draining: CancellationToken) -> Self {
        EndAtDrainLayer { draining }
    }
}

impl<S> Layer<S> for EndAtDrainLayer {
    type Service = EndAtDrain<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EndAtDrain {
            inner,
            draining: self.draining.clone(),
        }
    }
}

/// A service behind [`EndAtDrainLayer`].
#[derive(Clone, Debug)]
pub struct EndAtDrain<S> {
    inner: S,
    draining: CancellationToken,
}

impl<S: NamedService> NamedService for EndAtDrain<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for EndAtDrain<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let draining = self.draining.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Body::new(EndsAtDrain::new(body, &draining, ()))))
        })
    }
}

/// A TCP connection that fails every read and write once `token` is cancelled.
pub struct DrainableStream {
    inner: TcpStream,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl DrainableStream {
    /// Wraps an accepted connection.
    pub fn new(inner: TcpStream, token: &CancellationToken) -> Self {
        DrainableStream {
            inner,
            cancelled: Box::pin(token.clone().cancelled_owned()),
        }
    }

    /// `Err` once the token is cancelled; also registers the task to be woken then.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cancelled.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "shutdown grace period over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl Connected for DrainableStream {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for DrainableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DrainableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
