//! What the command-line tool writes when something goes wrong: a failed
//! write to stdout fails the command (it exited 0, or panicked), a file is
//! written whole or not at all, an error says each thing once, and a
//! benchmark that measured nothing does not pass.

mod support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use support::binary;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/or-not.json");

fn run(args: &[&str], stdout: Stdio) -> Output {
    binary::command(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyfilter")
        .wait_with_output()
        .expect("its exit")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_full_stdout_fails_the_command() {
    for args in [
        &["compile", "--spec", SPEC, "--python", "3.12"][..],
        &["dis", "--spec", SPEC, "--python", "3.12"][..],
        &["explain", "--spec", SPEC][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let output = run(args, Stdio::from(full));
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("writing to stdout: No space left on device"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn output_files_are_written_whole_and_keys_never_overwritten() {
    let dir = tempfile::tempdir().expect("a directory");
    let out = dir.path().join("matcher.bin");
    std::fs::write(&out, b"previous").unwrap();
    let output = run(
        &[
            "compile",
            "--spec",
            SPEC,
            "--python",
            "3.12",
            "-o",
            out.to_str().unwrap(),
        ],
        Stdio::null(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let code = std::fs::read(&out).unwrap();
    assert!(
        matches!(code.first(), Some(b'c' | 0xe3)),
        "a marshalled code object replaced the file"
    );

    let key = dir.path().join("signing.pem");
    let output = run(&["keygen", "-o", key.to_str().unwrap()], Stdio::null());
    assert!(output.status.success(), "{}", stderr(&output));
    let pem = std::fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = run(&["keygen", "-o", key.to_str().unwrap()], Stdio::null());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists; not overwriting it"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&key).unwrap(), pem, "the key is unchanged");
    // Nothing else was left in the directory (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["matcher.bin", "signing.pem"]);
}

#[test]
fn an_error_says_each_thing_once() {
    let dir = tempfile::tempdir().expect("a directory");
    let spec = dir.path().join("bad.json");
    std::fs::write(
        &spec,
        r#"{"arity": 1, "predicates": [{"field": 3, "op": "eq", "value": "x"}]}"#,
    )
    .unwrap();
    let output = run(&["explain", "--spec", spec.to_str().unwrap()], Stdio::null());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "keyfilter: in spec file {}: spec.predicates[0]: field 3 is out of range for arity 1",
            spec.display()
        )
    );
}

/// A listener that accepts connections and never answers.
#[test]
fn a_benchmark_that_measured_nothing_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok((stream, _)) = listener.accept() {
                open.push(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let target = format!("http://{addr}");
    let started = Instant::now();
    let output = run(
        &[
            "bench",
            "match",
            "--target",
            &target,
            "--duration",
            "2s",
            "--timeout",
            "4s",
        ],
        Stdio::null(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("no call completed"), "{}", stderr(&output));
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    drop(held);
}
