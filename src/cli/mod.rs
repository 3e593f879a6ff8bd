//! Command-line interface: thin wrappers over the library.

mod bench;
mod codegen_cmds;
mod keys;
mod output;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Filter tuples of byte strings by a spec: natively over gRPC, or as CPython
/// bytecode compiled for the caller's interpreter.
#[derive(Debug, Parser)]
#[command(name = "keyfilter", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server (KeyFilter, grpc.health.v1, server reflection).
    Serve(Box<serve::ServeArgs>),
    /// Compile a spec file into the marshal bytes of a CPython code object.
    Compile(codegen_cmds::CompileArgs),
    /// Print a disassembly of the code generated for a spec file.
    Dis(codegen_cmds::DisArgs),
    /// Print the normalized plan of a spec file: the checks in evaluation order.
    Explain(codegen_cmds::ExplainArgs),
    /// Generate an Ed25519 signing key for `serve --signing-key` and print its public key.
    Keygen(keys::KeygenArgs),
    /// Print the public key (hex and PEM) of a signing key, for clients to verify with.
    Pubkey(keys::PubkeyArgs),
    /// Drive a running server with load (Match or Filter) and report keys/s and latency percentiles.
    Bench(Box<bench::BenchArgs>),
}

/// An error and its causes, `: `-separated, leaving out a cause its
/// effect already quotes (the engine's errors include their source's text:
/// printed as a chain they said everything twice).
fn error_chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Runs a parsed command line; errors are printed to stderr.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Compile(args) => codegen_cmds::compile(args),
        Command::Dis(args) => codegen_cmds::dis(args),
        Command::Explain(args) => codegen_cmds::explain(args),
        Command::Bench(args) => bench::run(*args),
        Command::Keygen(args) => keys::keygen(args),
        Command::Pubkey(args) => keys::pubkey(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfilter: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
