//! `keyfilter compile`, `keyfilter dis` and `keyfilter explain`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use keyfilter_core::codegen::{Function, PyVersion};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{parse_spec_file, Limits, Spec};
use keyfilter_core::{compile_python, validate, Target};

use super::output;

/// What both commands take.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Spec file (JSON; see the README's "Spec file format"); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Target CPython version: 3.9 to 3.15 (a micro version such as 3.12.7 is accepted).
    #[arg(long = "python", value_name = "VERSION")]
    python: PyVersion,
    /// Function name (`co_name`/`co_qualname`): a Python identifier of at most 200 characters.
    #[arg(long, default_value = keyfilter_core::codegen::DEFAULT_NAME)]
    name: String,
}

/// Arguments of `keyfilter compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Output file for the marshal bytes; stdout when absent.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

/// Arguments of `keyfilter dis`.
#[derive(Debug, Args)]
pub struct DisArgs {
    #[command(flatten)]
    spec: SpecArgs,
}

/// Arguments of `keyfilter explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Spec file (JSON; see the README's "Spec file format"); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
}

/// The largest spec file read: a spec within the default limits (64 MiB of
/// values) fits, even with every byte escaped; `/dev/zero` does not.
const MAX_SPEC_FILE_BYTES: u64 = 512 << 20;

/// Reads and validates a spec file (`-`: stdin).
fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let text = if path.as_os_str() == "-" {
        read_bounded(std::io::stdin().lock()).context("reading the spec from stdin")?
    } else {
        std::fs::File::open(path)
            .and_then(read_bounded)
            .with_context(|| format!("reading {}", path.display()))?
    };
    let input = parse_spec_file(&text).with_context(|| format!("in spec file {}", path.display()))?;
    validate(&input, &Limits::default()).with_context(|| format!("in spec file {}", path.display()))
}

/// At most [`MAX_SPEC_FILE_BYTES`] of UTF-8 text from `source`.
fn read_bounded(source: impl Read) -> std::io::Result<String> {
    let mut text = String::new();
    source.take(MAX_SPEC_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SPEC_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB: not a spec file",
            MAX_SPEC_FILE_BYTES >> 20
        )));
    }
    Ok(text)
}

fn generate(args: &SpecArgs) -> anyhow::Result<Function> {
    let spec = read_spec(&args.spec)?;
    Ok(compile_python(&spec, &Target::new(args.python, &args.name)?))
}

/// `keyfilter explain`: prints the normalized plan.
pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    output::stdout(Plan::new(&read_spec(&args.spec)?).to_string())
}

/// `keyfilter compile`: writes the marshal bytes.
pub fn compile(args: CompileArgs) -> anyhow::Result<()> {
    let bytes = generate(&args.spec)?.marshal();
    match &args.output {
        Some(path) => output::replace_file(path, &bytes),
        None => output::stdout(&bytes),
    }
}

/// `keyfilter dis`: prints the disassembly.
pub fn dis(args: DisArgs) -> anyhow::Result<()> {
    output::stdout(keyfilter_core::codegen::dis::disassemble(&generate(&args.spec)?))
}
