//! The `keyfilter` command: `serve`, `compile`, `dis`, `bench`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    keyfilter::cli::run(keyfilter::cli::Cli::parse())
}
