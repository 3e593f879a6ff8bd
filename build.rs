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
    // Messages and clients, for everyone.
    tonic_prost_build::configure()
        // Fields of type `bytes` become `bytes::Bytes`: decoding slices the
        // request buffer instead of copying every field.
        .bytes(".")
        .build_server(false)
        .compile_fds(descriptors.clone())?;
    // The server stubs, over hand-written request types that decode keys
    // straight into a flat buffer and keep specs encoded until the handler
    // parses them against the limits (src/service/wire); every other type is the
    // generated one above, so no message is generated twice.
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&server_dir)
        .extern_path(".keyfilter.v1", "crate::proto")
        .extern_path(".keyfilter.v1.MatchRequest", "crate::service::wire::MatchRequest")
        .extern_path(".keyfilter.v1.FilterRequest", "crate::service::wire::FilterRequest")
        .extern_path(".keyfilter.v1.CompileRequest", "crate::service::wire::CompileRequest")
        .compile_fds(descriptors)?;
    Ok(())
}
