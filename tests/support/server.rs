//! `keyfilter::server::serve` in this process, on `127.0.0.1:<free port>`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};

use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::server::{serve, ServerConfig};

/// Upper bound on connecting to the server and on [`TestServer::stop`].
pub const STEP: Duration = Duration::from_secs(10);

/// A plaintext channel to `addr` whose connection and calls are bounded by [`STEP`].
pub async fn plaintext_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(STEP)
        .timeout(STEP)
        .connect()
        .await
        .expect("connect")
}

/// A server running in this process on `127.0.0.1:<free port>`.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let (shutdown, signal) = oneshot::channel::<()>();
        // Dropping the sender (e.g. when a test panics) also shuts the server down.
        let handle = tokio::spawn(serve(config, listener, async move {
            let _ = signal.await;
        }));
        TestServer {
            addr,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    pub async fn start_default() -> TestServer {
        TestServer::start(ServerConfig::default()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("endpoint")
            .connect_timeout(STEP)
            .connect()
            .await
            .expect("connect to the test server")
    }

    pub async fn client(&self) -> KeyFilterClient<Channel> {
        KeyFilterClient::new(self.channel().await)
    }

    /// Sends the shutdown signal, which `serve` must still be waiting for.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(())
                .expect("the server is still waiting for its shutdown signal");
        }
    }

    /// Waits (at most `within`) for `serve` to return, and checks it returned `Ok`.
    pub async fn stopped(&mut self, within: Duration) {
        let handle = self.handle.take().expect("not joined yet");
        timeout(within, handle)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {within:?}"))
            .expect("serve task panicked")
            .expect("serve returned an error");
    }

    /// Signals shutdown (if `serve` still listens for it) and checks that
    /// `serve` returns `Ok` within [`STEP`].
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().expect("not stopped yet");
        timeout(STEP, handle)
            .await
            .expect("serve returned within STEP")
            .expect("serve task panicked")
            .expect("serve returned an error");
    }
}
