//! Tidy checks on the layout (in the spirit of rust-analyzer's `tidy.rs`): the
//! boundaries ARCHITECTURE.md states, checked so they stay true.
//!
//! - The core has no I/O stack: no async runtime, gRPC, protobuf, HTTP, TLS or
//!   Python bindings among its dependencies (normal or build, every feature).
//! - The Python extension has the core and the contract's messages, but no
//!   server stack: no tokio, tonic, hyper, h2, tower or TLS.
//! - Versions are data: outside `codegen/version.rs`, no code (tests aside)
//!   names a `PyVersion` variant or compares versions; everything else asks
//!   the version's record.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate in `package`'s dependency graph (normal and build edges, all features).
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--locked",
            "-p",
            package,
            "--all-features",
            "-e",
            "normal,build",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.len() > 3,
        "cargo tree listed almost nothing for {package}: {names:?}"
    );
    names
}

fn assert_none_of(package: &str, forbidden: &[&str]) {
    let deps = dependencies(package);
    assert!(
        deps.iter().any(|d| d == package),
        "{package} not in its own tree: {deps:?}"
    );
    let found: Vec<&String> = deps.iter().filter(|d| forbidden.contains(&d.as_str())).collect();
    assert!(found.is_empty(), "{package} depends on {found:?}, which it must not");
}

#[test]
fn the_core_has_no_io_stack() {
    assert_none_of(
        "keyfilter-core",
        &[
            "tokio",
            "tonic",
            "prost",
            "prost-build",
            "protox",
            "hyper",
            "h2",
            "http",
            "tower",
            "rustls",
            "ring",
            "pyo3",
            "mio",
            "clap",
            "tracing",
            "metrics",
        ],
    );
}

#[test]
fn the_python_extension_has_no_server_stack() {
    assert_none_of(
        "keyfilter-python",
        &[
            "keyfilter",
            "tokio",
            "tonic",
            "tonic-prost",
            "hyper",
            "h2",
            "http",
            "tower",
            "rustls",
            "ring",
            "mio",
            "clap",
            "metrics",
            "metrics-exporter-prometheus",
            "hdrhistogram",
            "tracing-subscriber",
        ],
    );
    let deps = dependencies("keyfilter-python");
    assert!(deps.iter().any(|d| d == "keyfilter-core"), "{deps:?}");
}

/// Rust sources under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` decides something by version instead of asking the record.
fn is_version_check(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let names_variant = code.match_indices("PyVersion::V").any(|(i, _)| {
        code[i + "PyVersion::V".len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    let compares = [
        "< PyVersion",
        "<= PyVersion",
        "> PyVersion",
        ">= PyVersion",
        "== PyVersion",
        "!= PyVersion",
    ]
    .iter()
    .any(|op| code.contains(op))
        || code.contains("minor() <")
        || code.contains("minor() >")
        || code.contains("minor() ==");
    names_variant || compares
}

#[test]
fn versions_are_decided_only_by_their_records() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in [
        "crates/keyfilter-core/src",
        "crates/keyfilter-proto/src",
        "src",
        "python/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} sources", files.len());
    let records = root.join("crates/keyfilter-core/src/codegen/version.rs");
    let mut offenders = Vec::new();
    for file in &files {
        if file.canonicalize().ok() == records.canonicalize().ok() {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        // Unit tests may name versions: they pin what the records say.
        let shipped = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in shipped.lines().enumerate() {
            if is_version_check(line) {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "version checks outside codegen/version.rs (put the fact in the version record):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_version_check_detector_detects() {
    assert!(is_version_check("if version <= PyVersion::V3_13 {"));
    assert!(is_version_check("PyVersion::V3_9 => Vec::new(),"));
    assert!(is_version_check("if v.minor() >= 13 {"));
    assert!(!is_version_check("let v: PyVersion = text.parse()?;"));
    assert!(!is_version_check("// PyVersion::V3_9 in a comment"));
    assert!(!is_version_check("version.record().none_first_const"));
}
