//! `keyfilter serve` configuration through the binary: `--print-config`,
//! precedence (flag > environment > config file > default), redaction of
//! secrets, errors that name the key at fault, `--help`, and a config file
//! that actually reaches the running server.
//!
//! Every child runs with the caller's `KEYFILTER_*` variables removed, is
//! waited for with a bound, and is killed if a test fails while it runs.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::Endpoint;
use tonic::Code;

use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::{FilterSpec, Key, MatchRequest};

mod support;

use support::binary::{self, write, KillOnDrop, Server};

/// Upper bound on any child process run or step.
const STEP: Duration = Duration::from_secs(10);

/// Every environment variable `keyfilter serve` reads, per the README's table.
const ENV_VARS: [&str; 43] = [
    "KEYFILTER_CONFIG",
    "KEYFILTER_ADDR",
    "KEYFILTER_LOG_FORMAT",
    "KEYFILTER_LOG",
    "KEYFILTER_METRICS_ADDR",
    "KEYFILTER_METRICS_MAX_CONNECTIONS",
    "KEYFILTER_MAX_MESSAGE_BYTES",
    "KEYFILTER_REQUEST_TIMEOUT",
    "KEYFILTER_MAX_CONCURRENT_REQUESTS",
    "KEYFILTER_MAX_CALLS_PER_CONNECTION",
    "KEYFILTER_MAX_FILTER_STREAMS",
    "KEYFILTER_MAX_CONNECTIONS",
    "KEYFILTER_CONNECTION_IDLE_TIMEOUT",
    "KEYFILTER_RESPONSE_STALL_TIMEOUT",
    "KEYFILTER_MAX_CONNECTIONS_PER_IP",
    "KEYFILTER_MAX_WATCH_STREAMS",
    "KEYFILTER_MAX_PROBE_CALLS_PER_CONNECTION",
    "KEYFILTER_FILTER_BUFFER",
    "KEYFILTER_FILTER_IDLE_TIMEOUT",
    "KEYFILTER_SHUTDOWN_GRACE",
    "KEYFILTER_COMPILE_CACHE_ENTRIES",
    "KEYFILTER_COMPILE_CACHE_BYTES",
    "KEYFILTER_MATCHER_CACHE_ENTRIES",
    "KEYFILTER_MATCHER_CACHE_BYTES",
    "KEYFILTER_MAX_KEYS_PER_REQUEST",
    "KEYFILTER_CPU_SLOTS",
    "KEYFILTER_HTTP2_MAX_CONCURRENT_STREAMS",
    "KEYFILTER_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS",
    "KEYFILTER_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS",
    "KEYFILTER_MAX_ARITY",
    "KEYFILTER_MAX_PREDICATES",
    "KEYFILTER_MAX_VALUE_BYTES",
    "KEYFILTER_MAX_IN_VALUES",
    "KEYFILTER_MAX_TOTAL_VALUE_BYTES",
    "KEYFILTER_MAX_EXPR_DEPTH",
    "KEYFILTER_MAX_EXPR_NODES",
    "KEYFILTER_TLS_CERT",
    "KEYFILTER_TLS_KEY",
    "KEYFILTER_TLS_CLIENT_CA",
    "KEYFILTER_AUTH_TOKENS_FILE",
    "KEYFILTER_AUTH_TOKENS",
    "KEYFILTER_SIGNING_KEY",
    "KEYFILTER_SIGNING_KEY_ID",
];

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// `keyfilter ARGS` with only `env` among the `KEYFILTER_*` variables.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = binary::command(args);
    command
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs `keyfilter ARGS` to completion (bounded by [`STEP`]).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyfilter");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("read a pipe");
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "keyfilter {args:?} did not exit within {STEP:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// `serve --print-config ARGS`, which must succeed; its output parsed as TOML.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (toml::Table, String) {
    let mut full = vec!["serve", "--print-config"];
    full.extend_from_slice(args);
    let output = run(&full, env);
    assert!(
        output.status.success(),
        "serve --print-config {args:?} failed:\n{}",
        stderr(&output)
    );
    let text = stdout(&output);
    let table = text
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{text}"));
    (table, text)
}

/// `serve ARGS`, which must fail at start; its stderr.
fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    let output = run(&full, env);
    let err = stderr(&output);
    assert!(
        !output.status.success(),
        "serve {args:?} succeeded:\n{}{err}",
        stdout(&output)
    );
    err
}

fn int(table: &toml::Table, key: &str) -> i64 {
    table
        .get(key)
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("{key} is not an integer in {table:?}"))
}

fn string<'a>(table: &'a toml::Table, key: &str) -> &'a str {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("{key} is not a string in {table:?}"))
}

// ---------------------------------------------------------------------------
// --print-config and precedence
// ---------------------------------------------------------------------------

#[test]
fn print_config_shows_the_defaults() {
    let (table, text) = print_config(&[], &[]);
    assert!(text.contains("addr = \"127.0.0.1:50051\""), "{text}");
    assert_eq!(string(&table, "addr"), "127.0.0.1:50051");
    assert_eq!(string(&table, "log_format"), "text");
    assert_eq!(string(&table, "log"), "info");
    assert_eq!(int(&table, "max_message_bytes"), 4 * 1024 * 1024);
    assert_eq!(string(&table, "request_timeout"), "30s");
    assert_eq!(int(&table, "max_concurrent_requests"), 256);
    assert_eq!(int(&table, "max_filter_streams"), 128);
    assert_eq!(int(&table, "max_connections"), 1024);
    assert_eq!(string(&table, "connection_idle_timeout"), "5m");
    assert_eq!(int(&table, "max_watch_streams"), 256);
    assert_eq!(int(&table, "max_keys_per_request"), 1_000_000);
    assert_eq!(int(&table, "cpu_slots"), 0);
    assert_eq!(int(&table, "compile_cache_bytes"), 64 * 1024 * 1024);
    assert_eq!(int(&table, "filter_buffer"), 4);
    assert_eq!(string(&table, "shutdown_grace"), "10s");
    assert_eq!(int(&table, "compile_cache_entries"), 1024);
    assert_eq!(int(&table, "matcher_cache_entries"), 1024);
    assert_eq!(int(&table, "matcher_cache_bytes"), 16 * 1024 * 1024);
    let limits = keyfilter_core::spec::Limits::default();
    assert_eq!(int(&table, "max_arity"), i64::from(limits.max_arity));
    assert_eq!(int(&table, "max_predicates"), limits.max_predicates as i64);
    assert_eq!(int(&table, "max_value_bytes"), limits.max_value_bytes as i64);
    assert_eq!(int(&table, "max_in_values"), limits.max_in_values as i64);
    assert_eq!(
        int(&table, "max_total_value_bytes"),
        limits.max_total_value_bytes as i64
    );
    // Unset optional settings are left out rather than shown empty.
    for off in [
        "metrics_addr",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "auth_tokens",
        "signing_key",
    ] {
        assert!(!table.contains_key(off), "{off} shown while unset:\n{text}");
    }
}

#[test]
fn flags_beat_environment_beats_config_file_beats_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "keyfilter.toml",
        "filter_buffer = 9\naddr = \"127.0.0.1:7000\"\nrequest_timeout = \"5s\"\nmax_arity = 12\n",
    );
    let file = ["--config", config.as_str()];

    // Default only.
    let (t, _) = print_config(&[], &[]);
    assert_eq!(int(&t, "filter_buffer"), 4);
    // The file beats the default.
    let (t, _) = print_config(&file, &[]);
    assert_eq!(int(&t, "filter_buffer"), 9);
    assert_eq!(string(&t, "addr"), "127.0.0.1:7000");
    assert_eq!(string(&t, "request_timeout"), "5s");
    // The environment beats the file, key by key.
    let env = [("KEYFILTER_FILTER_BUFFER", "5"), ("KEYFILTER_REQUEST_TIMEOUT", "750ms")];
    let (t, _) = print_config(&file, &env);
    assert_eq!(int(&t, "filter_buffer"), 5);
    assert_eq!(string(&t, "request_timeout"), "750ms");
    assert_eq!(
        string(&t, "addr"),
        "127.0.0.1:7000",
        "untouched keys keep the file's value"
    );
    assert_eq!(int(&t, "max_arity"), 12);
    // A flag beats the environment.
    let (t, _) = print_config(&["--config", &config, "--filter-buffer", "2"], &env);
    assert_eq!(int(&t, "filter_buffer"), 2);
    assert_eq!(string(&t, "request_timeout"), "750ms");
    // The environment beats the default without a file too.
    let (t, _) = print_config(&[], &[("KEYFILTER_FILTER_BUFFER", "5")]);
    assert_eq!(int(&t, "filter_buffer"), 5);
    // The config file can itself come from the environment.
    let (t, _) = print_config(&[], &[("KEYFILTER_CONFIG", &config)]);
    assert_eq!(int(&t, "filter_buffer"), 9);
    let (t, _) = print_config(&["--max-arity", "3"], &[("KEYFILTER_CONFIG", &config)]);
    assert_eq!(int(&t, "max_arity"), 3);
}

#[test]
fn print_config_round_trips_as_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, first) = print_config(
        &[
            "--filter-buffer",
            "7",
            "--log-format",
            "json",
            "--metrics-addr",
            "127.0.0.1:9999",
        ],
        &[("KEYFILTER_SHUTDOWN_GRACE", "2m 5s")],
    );
    let config = write(dir.path(), "printed.toml", &first);
    let (_, second) = print_config(&["--config", &config], &[]);
    assert_eq!(first, second, "the printed configuration does not read back to itself");
}

#[test]
fn secrets_are_redacted_from_print_config_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, env, secret) in [
        (vec!["--auth-tokens", "secret1"], vec![], "secret1"),
        (vec!["--auth-tokens", "secretA,secretB"], vec![], "secretA"),
        (vec![], vec![("KEYFILTER_AUTH_TOKENS", "envsecret")], "envsecret"),
    ] {
        let (table, text) = print_config(&args, &env);
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert_eq!(string(&table, "auth_tokens"), "<redacted>");
    }
    let config = write(dir.path(), "secret.toml", "auth_tokens = \"filesecret\"\n");
    let (table, text) = print_config(&["--config", &config], &[]);
    assert!(!text.contains("filesecret"), "{text}");
    assert_eq!(string(&table, "auth_tokens"), "<redacted>");

    // --help shows the variable's name, never its value.
    let help = run(&["serve", "--help"], &[("KEYFILTER_AUTH_TOKENS", "helpsecret")]);
    assert!(help.status.success());
    let help = stdout(&help);
    assert!(help.contains("KEYFILTER_AUTH_TOKENS"), "{help}");
    assert!(!help.contains("helpsecret"), "{help}");
}

// ---------------------------------------------------------------------------
// Errors name the key
// ---------------------------------------------------------------------------

#[test]
fn an_unknown_config_key_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "typo.toml", "addr = \"127.0.0.1:0\"\nfilter_bufer = 3\n");
    for print in [true, false] {
        let mut args = vec!["--config", config.as_str()];
        if print {
            args.push("--print-config");
        }
        let err = serve_fails(&args, &[]);
        assert!(err.contains("filter_bufer"), "{err}");
    }
}

#[test]
fn a_bad_value_fails_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (contents, key) in [
        ("filter_buffer = \"lots\"\n", "filter_buffer"),
        ("request_timeout = \"soon\"\n", "request_timeout"),
        ("request_timeout = 30\n", "request_timeout"),
        ("addr = \"not an address\"\n", "addr"),
        ("log_format = \"xml\"\n", "log_format"),
        ("max_arity = -1\n", "max_arity"),
        ("metrics_addr = 9090\n", "metrics_addr"),
    ] {
        // Good lines around the bad one: the error points at the bad one only.
        let text = format!("shutdown_grace = \"1s\"\n{contents}compile_cache_entries = 8\n");
        let config = write(dir.path(), "bad.toml", &text);
        let err = serve_fails(&["--print-config", "--config", &config], &[]);
        assert!(err.contains(key), "{contents:?}: the error does not name {key}:\n{err}");
        assert!(
            err.contains("line 2"),
            "{contents:?}: the error does not give the line:\n{err}"
        );
        for good in ["shutdown_grace", "compile_cache_entries"] {
            assert!(
                !err.contains(good),
                "{contents:?}: the error names {good}, which is fine:\n{err}"
            );
        }
    }
    // Bad values from the environment name the option too.
    let err = serve_fails(&["--print-config"], &[("KEYFILTER_FILTER_BUFFER", "lots")]);
    assert!(err.contains("filter-buffer"), "{err}");
    let err = serve_fails(&["--print-config", "--request-timeout", "soon"], &[]);
    assert!(err.contains("request-timeout"), "{err}");
    // Values that parse but cannot work are refused at start, by key.
    for (args, key) in [
        (vec!["--filter-buffer", "0"], "filter_buffer"),
        (vec!["--max-concurrent-requests", "0"], "max_concurrent_requests"),
        (vec!["--max-filter-streams", "0"], "max_filter_streams"),
        (vec!["--max-connections", "0"], "max_connections"),
        (vec!["--connection-idle-timeout", "0s"], "connection_idle_timeout"),
        (vec!["--log", "keyfilter=loud"], "log"),
    ] {
        let mut full = vec!["--print-config"];
        full.extend_from_slice(&args);
        let err = serve_fails(&full, &[]);
        assert!(err.contains(key), "{args:?}: the error does not name {key}:\n{err}");
    }
    // A config file that does not exist is named.
    let missing = dir.path().join("missing.toml");
    let err = serve_fails(&["--config", missing.to_str().unwrap()], &[]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn tls_settings_must_come_together() {
    let err = serve_fails(&["--addr", "127.0.0.1:0", "--tls-cert", "cert.pem"], &[]);
    assert!(err.contains("tls_key"), "{err}");
    let err = serve_fails(&["--addr", "127.0.0.1:0", "--tls-key", "key.pem"], &[]);
    assert!(err.contains("tls_cert"), "{err}");
    let err = serve_fails(&["--addr", "127.0.0.1:0"], &[("KEYFILTER_TLS_CERT", "cert.pem")]);
    assert!(err.contains("tls_key"), "{err}");
    let err = serve_fails(&["--addr", "127.0.0.1:0", "--tls-client-ca", "ca.pem"], &[]);
    assert!(err.contains("tls_client_ca"), "{err}");
}

// ---------------------------------------------------------------------------
// --help
// ---------------------------------------------------------------------------

/// Whether `help` shows `var` (as `[env: VAR=value]`, or `[env: VAR]` for a secret).
fn lists_env(help: &str, var: &str) -> bool {
    help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]"))
}

#[test]
fn serve_help_lists_every_environment_variable() {
    let output = run(&["serve", "--help"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for var in ENV_VARS {
        assert!(lists_env(&help, var), "--help does not list {var}:\n{help}");
    }
    // Every long option but --help and --print-config has its variable, named after it.
    let options: BTreeSet<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter_map(|w| w.strip_prefix("--"))
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .map(String::from)
        .collect();
    assert!(
        options.contains("addr") && options.contains("signing-key-id"),
        "{options:?}"
    );
    for option in options
        .iter()
        .filter(|o| !["help", "print-config"].contains(&o.as_str()))
    {
        let var = format!("KEYFILTER_{}", option.to_uppercase().replace('-', "_"));
        assert!(
            ENV_VARS.contains(&var.as_str()),
            "--{option} has no documented variable {var}"
        );
        assert!(lists_env(&help, &var), "--{option} does not show {var}:\n{help}");
    }
    assert_eq!(options.len() - 2, ENV_VARS.len(), "{options:?}");
}

// ---------------------------------------------------------------------------
// The merged configuration reaches the server
// ---------------------------------------------------------------------------

/// Starts `keyfilter serve` and returns the address it logs; killed when dropped.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Server, SocketAddr) {
    let mut server = Server::spawn_with_env(args, env);
    let addr = server.addr();
    (server, addr)
}

async fn match_arity(addr: SocketAddr, arity: u32) -> Result<Vec<bool>, tonic::Status> {
    let channel = tokio::time::timeout(
        STEP,
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .timeout(STEP)
            .connect(),
    )
    .await
    .expect("bounded connect")
    .expect("connect");
    let key = Key {
        fields: (0..arity).map(|_| Bytes::from_static(b"v")).collect(),
    };
    let request = MatchRequest {
        spec: Some(FilterSpec {
            arity,
            predicates: vec![],
            expr: None,
        }),
        keys: vec![key],
        packed_keys: None,
        columnar_keys: None,
    };
    tokio::time::timeout(STEP, KeyFilterClient::new(channel).r#match(request))
        .await
        .expect("bounded call")
        .map(|r| r.into_inner().matches)
}

#[tokio::test]
async fn the_config_file_and_environment_reach_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "keyfilter.toml", "addr = \"127.0.0.1:0\"\nmax_arity = 2\n");

    // From the file: arity 3 is over the limit.
    let (server, addr) = start(&["--config", &config], &[]);
    assert_eq!(match_arity(addr, 2).await.expect("arity 2"), [true]);
    let status = match_arity(addr, 3).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("arity"), "{status:?}");
    drop(server);

    // The environment raises it over the file.
    let (server, addr) = start(&["--config", &config], &[("KEYFILTER_MAX_ARITY", "5")]);
    assert_eq!(match_arity(addr, 3).await.expect("arity 3"), [true]);
    drop(server);
}
