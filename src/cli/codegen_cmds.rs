//! `keyfilter compile`, `keyfilter dis` and `keyfilter explain`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use keyfilter_core::codegen::{Function, PyVersion};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{parse_spec_file, Limits, Spec};
use keyfilter_core::{compile_python, validate, Target};

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

/// Reads and validates a spec file (`-`: stdin).
fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the spec from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let input = parse_spec_file(&text).with_context(|| format!("in spec file {}", path.display()))?;
    validate(&input, &Limits::default()).with_context(|| format!("in spec file {}", path.display()))
}

fn generate(args: &SpecArgs) -> anyhow::Result<Function> {
    let spec = read_spec(&args.spec)?;
    Ok(compile_python(&spec, &Target::new(args.python, &args.name)?))
}

/// `keyfilter explain`: prints the normalized plan.
pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    print!("{}", Plan::new(&read_spec(&args.spec)?));
    Ok(())
}

/// `keyfilter compile`: writes the marshal bytes.
pub fn compile(args: CompileArgs) -> anyhow::Result<()> {
    let bytes = generate(&args.spec)?.marshal();
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display())),
        None => std::io::stdout().write_all(&bytes).context("writing to stdout"),
    }
}

/// `keyfilter dis`: prints the disassembly.
pub fn dis(args: DisArgs) -> anyhow::Result<()> {
    print!("{}", keyfilter_core::codegen::dis::disassemble(&generate(&args.spec)?));
    Ok(())
}
