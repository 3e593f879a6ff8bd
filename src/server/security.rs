//! Transport security and caller authentication: TLS (optionally mutual) from
//! PEM files, and bearer tokens compared in constant time.

use std::sync::Arc;

use anyhow::Context;
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use super::settings::Settings;

/// TLS and authentication settings, loaded from the files the settings name.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Server TLS; `None` serves plaintext HTTP/2.
    pub tls: Option<ServerTlsConfig>,
    /// Caller authentication for the KeyFilter RPCs (health and reflection stay open).
    pub auth: TokenAuth,
}

impl Security {
    /// Reads certificates, keys and token files. Errors name the setting at fault.
    pub fn load(settings: &Settings) -> anyhow::Result<Security> {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = std::fs::read(cert).with_context(|| format!("tls_cert: reading {}", cert.display()))?;
                let key = std::fs::read(key).with_context(|| format!("tls_key: reading {}", key.display()))?;
                let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
                if let Some(ca) = &settings.tls_client_ca {
                    let ca = std::fs::read(ca).with_context(|| format!("tls_client_ca: reading {}", ca.display()))?;
                    tls = tls.client_ca_root(Certificate::from_pem(ca));
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
        Ok(Security { tls, auth })
    }
}

/// A tonic interceptor requiring `authorization: Bearer <token>` with one of
/// the configured tokens. With no tokens configured it lets every call through.
#[derive(Clone, Debug, Default)]
pub struct TokenAuth {
    tokens: Option<Arc<Vec<Vec<u8>>>>,
}

impl TokenAuth {
    /// Requires one of `tokens`.
    pub fn new(tokens: Vec<String>) -> Self {
        TokenAuth {
            tokens: Some(Arc::new(tokens.into_iter().map(String::into_bytes).collect())),
        }
    }

    /// Whether `presented` is a configured token. Every token is compared, in
    /// constant time, so timing reveals neither which nor how much matched.
    fn accepts(tokens: &[Vec<u8>], presented: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for token in tokens {
            ok |= token.as_slice().ct_eq(presented);
        }
        ok.into()
    }
}

impl tonic::service::Interceptor for TokenAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(tokens) = &self.tokens else { return Ok(request) };
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let presented = header.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match presented {
            Some(token) if TokenAuth::accepts(tokens, token.trim().as_bytes()) => Ok(request),
            Some(_) => {
                // Never log the token itself.
                tracing::warn!(peer = ?request.remote_addr(), "rejected call: invalid bearer token");
                Err(Status::unauthenticated("invalid bearer token"))
            }
            None => {
                tracing::warn!(peer = ?request.remote_addr(), "rejected call: no bearer token");
                Err(Status::unauthenticated(
                    "missing credentials: send `authorization: Bearer <token>`",
                ))
            }
        }
    }
}
