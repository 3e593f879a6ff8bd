//! Compiles `proto/` into Rust with `protox` (a pure-Rust protobuf compiler), so a
//! fresh machine needs no system `protoc`. Also writes the encoded descriptor set
//! that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/keyfilter/v1/keyfilter.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("keyfilter_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Fields of type `bytes` become `bytes::Bytes`: decoding slices the
        // request buffer instead of copying every field.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
