//! Compiles `proto/keyfilter/v1/keyfilter.proto` into prost messages with
//! `protox` (a pure-Rust protobuf compiler, so a fresh machine needs no system
//! `protoc`), and writes the encoded descriptor set that server reflection serves.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = root.join("keyfilter/v1/keyfilter.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("keyfilter_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    prost_build::Config::new()
        // Fields of type `bytes` become `bytes::Bytes`: decoding slices the
        // buffer instead of copying every field.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
