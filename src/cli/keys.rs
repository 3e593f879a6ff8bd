//! `keyfilter keygen` and `keyfilter pubkey`: Ed25519 keys for signed matchers.

use std::path::PathBuf;

use super::output;
use clap::Args;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::EncodePublicKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;

use crate::service::signing::Signer;

/// Options of `keyfilter keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600); refuses to overwrite.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
}

/// Options of `keyfilter pubkey`.
#[derive(Debug, Args)]
pub struct PubkeyArgs {
    /// The private key (PKCS#8 PEM) given to `serve --signing-key`.
    #[arg(long, value_name = "FILE")]
    signing_key: PathBuf,
}

fn describe(signer: &Signer) -> anyhow::Result<String> {
    let public = ed25519_dalek::VerifyingKey::from_bytes(&signer.public_key())?;
    let pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    let hex: String = signer.public_key().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("key id: {}\npublic key (hex): {hex}\n{pem}", signer.key_id()))
}

/// Generates a signing key and prints its public half.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    output::create_private_file(&args.out, pem.as_bytes())?;
    output::stdout(describe(&Signer::new(key, None))?)
}

/// Prints the public half of a signing key, for clients to verify with.
pub fn pubkey(args: PubkeyArgs) -> anyhow::Result<()> {
    output::stdout(describe(&Signer::from_pem_file(&args.signing_key, None)?)?)
}
