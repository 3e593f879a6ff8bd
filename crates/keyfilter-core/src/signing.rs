//! The message a signed `Compile` answer covers: what `Compile` returns *and
//! the request it answers*, so a client holding the public key can refuse code
//! that did not come from the server, and code made for another spec, version,
//! name or key. The server signs it with Ed25519; the Python client rebuilds it
//! from its own request and verifies. Keys and signatures are not this crate's
//! business, only the exact bytes.
//!
//! The signed message is, with every integer big-endian:
//!
//! ```text
//! b"keyfilter-compile-v2\0"          context (21 bytes)
//! u64 len(key_id)          key_id     the key id sent with the signature (UTF-8)
//! 32 bytes                 spec digest  [`canonical_digest`](crate::spec::canonical_digest) of the spec as validated
//! u64 len(python_version)  python_version, exactly as sent in the request (and echoed)
//! u64 len(name)            name, exactly as sent in the request ("" when absent)
//! u64 len(magic)           magic
//! u64 len(code)            code
//! ```
//!
//! Every variable-length part is length-prefixed, so no two different
//! (request, answer) pairs give the same message.

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
