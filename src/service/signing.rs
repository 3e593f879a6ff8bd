//! Signed matchers: an Ed25519 signature over what `Compile` returns *and the
//! request it answers*, so a client holding the public key can refuse code that
//! did not come from us, and code made for another spec, version, name or key.
//!
//! The signed message is, with every integer big-endian:
//!
//! ```text
//! b"keyfilter-compile-v2\0"          context (21 bytes)
//! u64 len(key_id)          key_id     the key id sent with the signature (UTF-8)
//! 32 bytes                 spec digest  spec::canonical_digest of the spec as validated
//! u64 len(python_version)  python_version, exactly as sent in the request (and echoed)
//! u64 len(name)            name, exactly as sent in the request ("" when absent)
//! u64 len(magic)           magic
//! u64 len(code)            code
//! ```
//!
//! Every variable-length part is length-prefixed, so no two different
//! (request, answer) pairs give the same message.

use std::path::Path;

use anyhow::Context;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer as _, SigningKey};

/// Domain separation prefix of every signed message.
pub const SIGNATURE_CONTEXT: &[u8] = b"keyfilter-compile-v2\0";

/// What a `Compile` signature binds: the request it answers and the answer.
#[derive(Clone, Copy, Debug)]
pub struct SignedCompile<'a> {
    /// The id of the signing key, as sent in `CompileResponse.key_id`.
    pub key_id: &'a str,
    /// [`canonical_digest`](crate::spec::canonical_digest) of the validated spec.
    pub spec_digest: &'a [u8; 32],
    /// `python_version` as the request gave it.
    pub python_version: &'a str,
    /// `name` as the request gave it (`""` for the default).
    pub name: &'a str,
    /// The magic number sent.
    pub magic: &'a [u8],
    /// The marshal bytes sent.
    pub code: &'a [u8],
}

impl SignedCompile<'_> {
    /// The bytes a `Compile` signature covers (see the module doc).
    pub fn message(&self) -> Vec<u8> {
        let prefixed = [
            self.python_version.as_bytes(),
            self.name.as_bytes(),
            self.magic,
            self.code,
        ];
        let size = SIGNATURE_CONTEXT.len()
            + 8
            + self.key_id.len()
            + self.spec_digest.len()
            + prefixed.iter().map(|p| 8 + p.len()).sum::<usize>();
        let mut m = Vec::with_capacity(size);
        m.extend_from_slice(SIGNATURE_CONTEXT);
        put_prefixed(&mut m, self.key_id.as_bytes());
        // Fixed size, so no prefix.
        m.extend_from_slice(self.spec_digest);
        for part in prefixed {
            put_prefixed(&mut m, part);
        }
        m
    }
}

/// Appends `part` after its length as a big-endian u64.
fn put_prefixed(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_be_bytes());
    out.extend_from_slice(part);
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
