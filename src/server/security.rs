//! Transport security and caller authentication: TLS (optionally mutual) from
//! PEM files, and bearer tokens compared in constant time.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::Status;
use tower::{Layer, Service};

use super::settings::Settings;

/// Per-call warnings for rejected credentials: anyone who can reach the port
/// can cause them, one per request.
static REJECTION_LOG: LogThrottle = LogThrottle::new(LOG_LINES_PER_SECOND);

/// At most this many "rejected call" lines a second.
const LOG_LINES_PER_SECOND: u32 = 10;

/// At most `per_second` lines in each second; the lines held back are
/// counted, and the next line written says how many (`suppressed`).
pub(crate) struct LogThrottle {
    per_second: u32,
    /// The current one-second window's start (`None` before the first line)
    /// and lines written in it.
    window: Mutex<(Option<Instant>, u32)>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    const fn new(per_second: u32) -> LogThrottle {
        LogThrottle {
            per_second,
            window: Mutex::new((None, 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one written)` if a line may be
    /// written `now`, else `None` (and it is counted).
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if window
            .0
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1))
        {
            *window = (Some(now), 0);
        }
        if window.1 < self.per_second {
            window.1 += 1;
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// TLS and authentication settings, loaded from the files the settings name.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Server TLS; `None` serves plaintext HTTP/2.
    pub tls: Option<ServerTlsConfig>,
    /// Caller authentication for the KeyFilter RPCs (health and reflection stay open).
    pub auth: TokenAuth,
    /// Whether `tls` requires a client certificate (mutual TLS).
    pub client_certificates: bool,
}

/// Reads a PEM file and checks that it holds what `setting` needs, so a wrong
/// file fails at start with the setting's name rather than at the first handshake.
fn read_pem(setting: &str, path: &Path, want_key: bool) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("{setting}: reading {}", path.display()))?;
    if want_key {
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| anyhow::anyhow!("{setting}: {} holds no usable private key: {e}", path.display()))?;
    } else {
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{setting}: {} is not PEM certificates: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("{setting}: {} holds no certificate", path.display());
        }
    }
    Ok(pem)
}

impl Security {
    /// Whether callers must prove who they are (a bearer token or a client
    /// certificate) before a KeyFilter call is served.
    pub fn authenticates_callers(&self) -> bool {
        self.auth.is_required() || (self.tls.is_some() && self.client_certificates)
    }

    /// Reads certificates, keys and token files. Errors name the setting at fault.
    pub fn load(settings: &Settings) -> anyhow::Result<Security> {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = read_pem("tls_cert", cert, false)?;
                let key = read_pem("tls_key", key, true)?;
                let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
                if let Some(ca) = &settings.tls_client_ca {
                    tls = tls.client_ca_root(Certificate::from_pem(read_pem("tls_client_ca", ca, false)?));
                }
                Some(tls)
            }
            _ => None,
        };
        let mut tokens = Vec::new();
        if let Some(path) = &settings.auth_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("auth_tokens_file: reading {}", path.display()))?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if let Some(list) = &settings.auth_tokens {
            tokens.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            );
        }
        let configured = settings.auth_tokens_file.is_some() || settings.auth_tokens.is_some();
        if configured && tokens.is_empty() {
            anyhow::bail!("auth_tokens_file/auth_tokens: authentication is configured but no token was found");
        }
        let auth = if configured {
            TokenAuth::new(tokens)
        } else {
            TokenAuth::default()
        };
        Ok(Security {
            client_certificates: settings.tls_client_ca.is_some(),
            tls,
            auth,
        })
    }
}

/// Bearer-token authentication: a tower layer in front of the KeyFilter
/// service requiring `authorization: Bearer <token>` with a configured token.
/// With no tokens configured it lets every call through.
#[derive(Clone, Debug, Default)]
pub struct TokenAuth {
    /// SHA-256 digests of the accepted tokens: comparing fixed-size digests
    /// leaks neither the tokens' contents nor their lengths through timing.
    digests: Option<Arc<Vec<[u8; 32]>>>,
}

impl TokenAuth {
    /// Whether a token is required (some were configured).
    pub fn is_required(&self) -> bool {
        self.digests.is_some()
    }

    /// Requires one of `tokens`.
    pub fn new(tokens: Vec<String>) -> Self {
        TokenAuth {
            digests: Some(Arc::new(
                tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()).collect(),
            )),
        }
    }

    /// Checks an `authorization` header value; `Err` is the status to answer.
    fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        let Some(digests) = &self.digests else { return Ok(()) };
        let header = header.and_then(|h| std::str::from_utf8(h).ok()).map(str::trim);
        // The scheme name is case-insensitive (RFC 7235).
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(Status::unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`",
            ));
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every digest is compared, so timing reveals neither which nor how much matched.
        let mut ok = subtle::Choice::from(0);
        for digest in digests.iter() {
            ok |= digest.ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

impl<S> Layer<S> for TokenAuth {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.clone(),
        }
    }
}

/// A service behind [`TokenAuth`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    auth: TokenAuth,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Authenticated<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self
            .auth
            .check(request.headers().get("authorization").map(|v| v.as_bytes()))
        {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                let rpc = crate::service::metrics::rpc_name(request.uri().path());
                // Never log the token itself; and no more than a few lines a
                // second, whatever an unauthenticated caller sends (the
                // counter below counts every one).
                if let Some(suppressed) = REJECTION_LOG.admit(Instant::now()) {
                    tracing::warn!(rpc, reason = status.message(), suppressed, "rejected call");
                }
                crate::service::metrics::rejected("unauthenticated");
                crate::service::metrics::observe::<()>(rpc, std::time::Instant::now(), &Err(status.clone()));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_lines_are_throttled_and_counted() {
        let throttle = LogThrottle::new(3);
        let t0 = Instant::now();
        let at = |millis: u64| t0 + Duration::from_millis(millis);
        // Three lines in the first second, then held back and counted...
        let first: Vec<_> = (0..5).map(|i| throttle.admit(at(i * 100))).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        // ...and reported by the first line of the next second.
        assert_eq!(throttle.admit(at(1000)), Some(2));
        assert_eq!(throttle.admit(at(1001)), Some(0));
        // A quiet stretch starts a fresh window.
        assert_eq!(throttle.admit(at(60_000)), Some(0));
    }

    #[test]
    fn bearer_scheme_and_tokens() {
        let auth = TokenAuth::new(vec!["t1".into(), "t2".into()]);
        assert!(auth.check(Some(b"Bearer t1")).is_ok());
        assert!(auth.check(Some(b"bearer t2")).is_ok());
        assert!(auth.check(Some(b"BEARER  t2 ")).is_ok());
        assert!(auth.check(Some(b"Bearer t3")).is_err());
        assert!(auth.check(Some(b"Basic t1")).is_err());
        assert!(auth.check(Some(b"t1")).is_err());
        assert!(auth.check(None).is_err());
        assert!(TokenAuth::default().check(None).is_ok());
    }
}
