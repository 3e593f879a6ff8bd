//! Running generated code inside the real interpreters (see `tests/cpython/harness.py`).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use keyfilter::proto::FilterSpec;
use keyfilter_core::codegen::dis::disassemble;
use keyfilter_core::codegen::{Function, PyVersion};
use keyfilter_core::eval::Matcher;
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{reference_matches, spec_to_file_json, validate, Limits};
use serde_json::{json, Value};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn interpreter(version: PyVersion) -> PathBuf {
    let dir = std::env::var_os("KEYFILTER_PYTHONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/pythons"));
    let path = dir.join("bin").join(format!("python{version}"));
    assert!(
        path.exists(),
        "CPython {version} is missing at {}: run `bash scripts/fetch-pythons.sh` first (the matrix is never skipped)",
        path.display()
    );
    path
}

pub fn golden_dir() -> PathBuf {
    std::env::var_os("KEYFILTER_CPYTHON_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/cpython"))
        .join("golden")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One spec to run in an interpreter, with the keys to call it on.
pub struct Case {
    /// Names the case in failure messages.
    pub id: String,
    /// The spec.
    pub wire: FilterSpec,
    /// Keys to call the function with.
    pub keys: Vec<Vec<Bytes>>,
    /// Function name.
    pub name: String,
    /// Extra checks for the harness (`dis`, `type_error`, `arg_count`).
    pub extra: Value,
    /// Code to run instead of generating it here (e.g. bytes from the Compile RPC).
    pub code: Option<Vec<u8>>,
}

/// Runs `cases` (and the `golden` comparisons) in the real interpreter of
/// `version`; panics with the culprit spec on any disagreement or crash.
pub fn run_cases(version: PyVersion, cases: &[Case], golden: Vec<Value>) -> Value {
    let python = interpreter(version);
    let mut json_cases = Vec::new();
    for case in cases {
        let spec = validate(&case.wire.to_input(), &Limits::default()).unwrap();
        let plan = Plan::new(&spec);
        let matcher = Matcher::new(&plan);
        let expected: Vec<bool> = case
            .keys
            .iter()
            .map(|k| {
                let native = matcher.matches(k);
                assert_eq!(
                    native,
                    reference_matches(&spec, k),
                    "{}: native vs reference on {k:?}",
                    case.id
                );
                native
            })
            .collect();
        // Our own disassembly of the code we generate, for the harness to
        // compare with the interpreter's `dis` (bytes from elsewhere have none).
        let (code, listing) = match &case.code {
            Some(code) => (code.clone(), None),
            None => {
                let function = Function::generate(&plan, version, &case.name);
                (function.marshal(), Some(disassemble(&function)))
            }
        };
        let mut c = json!({
            "id": case.id,
            "arity": case.wire.arity,
            "name": case.name,
            "code": hex(&code),
            "keys": case.keys.iter().map(|k| k.iter().map(|f| hex(f)).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "expected": expected,
            "listing": listing,
        });
        c.as_object_mut()
            .unwrap()
            .extend(case.extra.as_object().unwrap().clone());
        json_cases.push(c);
    }
    let golden_count = golden.len();
    let data = json!({"cases": json_cases, "golden": golden});
    let harness = std::fs::read_to_string(repo().join("tests/cpython/harness.py")).unwrap();
    let mut script = tempfile::Builder::new()
        .prefix("keyfilter-matrix-")
        .suffix(".py")
        .tempfile()
        .unwrap();
    // The data goes into the script itself: Pyodide can read neither host files nor large stdin.
    // As ASCII (other characters as Python escapes): CPython 3.9's tokenizer
    // can fail on a very long source line holding multibyte characters.
    let literal: String = serde_json::to_string(&data.to_string())
        .unwrap()
        .chars()
        .map(|c| match c as u32 {
            0..=0x7f => c.to_string(),
            n @ 0x80..=0xffff => format!("\\u{n:04x}"),
            n => format!("\\U{n:08x}"),
        })
        .collect();
    writeln!(script, "DATA = {literal}").unwrap();
    script.write_all(harness.as_bytes()).unwrap();
    script.flush().unwrap();
    let output = Command::new(&python).arg(script.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    let Some(result) = result else {
        let last = stdout.lines().filter_map(|l| l.strip_prefix("START ")).next_back();
        let culprit = last.and_then(|id| cases.iter().find(|c| c.id == id));
        panic!(
            "CPython {version} did not finish ({}): last case started: {last:?}\nspec: {}\nstderr: {}",
            output.status,
            culprit
                .map(|c| spec_to_file_json(&c.wire.to_input()))
                .unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
                .chars()
                .take(4000)
                .collect::<String>()
        );
    };
    let result: Value = serde_json::from_str(result).unwrap();
    assert_eq!(
        result["version"],
        version.to_string(),
        "wrong interpreter at {}",
        python.display()
    );
    assert_eq!(result["magic"], hex(&version.magic()), "MAGIC_NUMBER of {version}");
    let failures = result["failures"].as_array().unwrap();
    if !failures.is_empty() {
        let first = &failures[0];
        let culprit = cases.iter().find(|c| c.id == first["case"].as_str().unwrap_or(""));
        panic!(
            "CPython {version}: {} failing cases; first: {}\nspec: {}",
            failures.len(),
            serde_json::to_string_pretty(first).unwrap(),
            culprit
                .map(|c| spec_to_file_json(&c.wire.to_input()))
                .unwrap_or_default()
        );
    }
    assert_eq!(result["cases"].as_u64().unwrap() as usize, cases.len());
    assert_eq!(result["golden"].as_u64().unwrap() as usize, golden_count);
    eprintln!(
        "CPython {version}: {} cases, {} calls, all agree",
        cases.len(),
        result["calls"]
    );
    assert!(output.status.success(), "{version} exited with {}", output.status);
    result
}
