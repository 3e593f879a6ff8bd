//! Signed matchers: an Ed25519 signature over what `Compile` returns *and the
//! request it answers*, so a client holding the public key can refuse code that
//! did not come from us, and code made for another spec, version, name or key.
//! The exact message is defined in `keyfilter_core::signing` (the Python client
//! builds it with the same code); this module only holds the key and signs.

use std::path::Path;

use anyhow::Context;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer as _, SigningKey};
use keyfilter_core::signing::SignedCompile;

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

    /// Signs a `Compile` answer for the request it answers; the message
    /// carries this signer's [`key_id`](Self::key_id).
    pub fn sign(
        &self,
        spec_digest: &[u8; 32],
        python_version: &str,
        name: &str,
        magic: &[u8],
        code: &[u8],
    ) -> [u8; 64] {
        let message = SignedCompile {
            key_id: &self.key_id,
            spec_digest,
            python_version,
            name,
            magic,
            code,
        }
        .message();
        self.key.sign(&message).to_bytes()
    }
}
