//! Generates the tonic client and server stubs of `proto/` with `protox` (a
//! pure-Rust protobuf compiler), so a fresh machine needs no system `protoc`;
//! the messages themselves come from the `keyfilter-proto` crate. Also sets the
//! build facts behind the `keyfilter_build_info` metric.

use std::path::{Path, PathBuf};
use std::{env, process::Command};

/// `git ARGS` in the package directory, trimmed; `None` if git is missing,
/// fails, or prints nothing (e.g. a source tarball without `.git`).
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// What `keyfilter_build_info` reports: the commit, the compiler and the
/// profile this binary was built from, as compile-time environment variables.
fn build_info() {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEYFILTER_GIT_REVISION={revision}");
    // Re-run when HEAD moves (a checkout rewrites HEAD, a commit rewrites the
    // branch's ref or packed-refs). Only existing files are named: cargo
    // treats a missing one as always changed, which would rebuild every time.
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
        watched.push("packed-refs".into());
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        // "rustc 1.89.0 (29483883e 2025-08-04)" -> "1.89.0"
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEYFILTER_RUSTC_VERSION={version}");
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=KEYFILTER_BUILD_PROFILE={profile}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    build_info();
    let proto = "proto/keyfilter/v1/keyfilter.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    // The messages are `keyfilter-proto`'s; only the gRPC stubs are made here.
    // The clients, for the load generator and the tests.
    tonic_prost_build::configure()
        .build_server(false)
        .extern_path(".keyfilter.v1", "::keyfilter_proto")
        .compile_fds(descriptors.clone())?;
    // The server stubs, over hand-written request types that decode keys
    // straight into a flat buffer and keep specs encoded until the handler
    // parses them against the limits (src/service/wire); every other type is
    // the generated message.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&server_dir)
        .extern_path(".keyfilter.v1", "::keyfilter_proto")
        .extern_path(".keyfilter.v1.MatchRequest", "crate::service::wire::MatchRequest")
        .extern_path(".keyfilter.v1.FilterRequest", "crate::service::wire::FilterRequest")
        .extern_path(".keyfilter.v1.CompileRequest", "crate::service::wire::CompileRequest")
        .compile_fds(descriptors)?;
    Ok(())
}
