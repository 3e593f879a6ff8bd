//! Signed matchers: an Ed25519 signature over what `Compile` returns, so a
//! client holding the public key can refuse code that did not come from us.
//!
//! The signed message is `b"keyfilter-compile-v1\0" + python_version + b"\0" +
//! magic + code`, with `python_version` exactly as sent in the response.

use std::path::Path;

use anyhow::Context;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer as _, SigningKey};

/// Domain separation prefix of every signed message.
pub const SIGNATURE_CONTEXT: &[u8] = b"keyfilter-compile-v1\0";

/// The bytes a `Compile` signature covers.
pub fn signed_message(python_version: &str, magic: &[u8], code: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + python_version.len() + 1 + magic.len() + code.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(python_version.as_bytes());
    m.push(0);
    m.extend_from_slice(magic);
    m.extend_from_slice(code);
    m
}

/// An Ed25519 key that signs `Compile` responses.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Wraps a key; `key_id` defaults to the first 8 bytes of the public key, in hex.
    pub fn new(key: SigningKey, key_id: Option<String>) -> Signer {
        let key_id = key_id.unwrap_or_else(|| {
            key.verifying_key().as_bytes()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        Signer { key, key_id }
    }

    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem_file(path: &Path, key_id: Option<String>) -> anyhow::Result<Signer> {
        let pem = std::fs::read_to_string(path).with_context(|| format!("signing_key: reading {}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("signing_key: {} is not an Ed25519 PKCS#8 PEM key: {e}", path.display()))?;
        Ok(Signer::new(key, key_id))
    }

    /// The id sent with each signature.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw 32-byte public key clients verify with.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs a `Compile` response's fields.
    pub fn sign(&self, python_version: &str, magic: &[u8], code: &[u8]) -> [u8; 64] {
        self.key.sign(&signed_message(python_version, magic, code)).to_bytes()
    }
}
