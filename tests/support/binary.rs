//! The `keyfilter` binary as a child process: a command with the caller's
//! `KEYFILTER_*` variables removed, a guard that kills the child when dropped,
//! and [`Server`], a `keyfilter serve` whose stderr is collected and whose
//! "keyfilter listening" log line gives its address.
//!
//! Every wait is bounded by [`STEP`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

/// The `keyfilter` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keyfilter");

/// Upper bound on a process start (until it listens) or exit.
pub const STEP: Duration = Duration::from_secs(10);

/// `keyfilter ARGS` without any of this process's `KEYFILTER_*` variables.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYFILTER_") {
            command.env_remove(name);
        }
    }
    command
}

/// A child process, killed if still running when dropped.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits at most [`STEP`] for `child` to exit.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "keyfilter did not exit within {STEP:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path.to_str().expect("utf-8 path").to_string()
}

/// The first `127.0.0.1:PORT` in `text`.
pub fn first_loopback_addr(text: &str) -> Option<SocketAddr> {
    let start = text.find("127.0.0.1:")?;
    let rest = &text[start..];
    let digits = rest["127.0.0.1:".len()..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len() - "127.0.0.1:".len());
    rest[..("127.0.0.1:".len() + digits)].parse().ok()
}

/// A loopback address whose port was free a moment ago.
pub fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("local_addr")
}

/// A `keyfilter serve` child process; killed when dropped.
pub struct Server {
    pub child: KillOnDrop,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<ThreadHandle<()>>,
}

impl Server {
    /// `keyfilter serve ARGS` with none of the caller's `KEYFILTER_*` variables.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_with_env(args, &[])
    }

    /// `keyfilter serve ARGS` with only `env` among the `KEYFILTER_*` variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let mut cmd = command(&full);
        cmd.envs(env.iter().copied());
        Server::spawn_command(cmd, &[], |_| {})
    }

    /// `command` (from [`command`], already holding `serve`) with `args`
    /// appended, after `edit` had its say (e.g. a `pre_exec` hook).
    pub fn spawn_command(mut command: Command, args: &[&str], edit: impl FnOnce(&mut Command)) -> Server {
        command.args(args);
        edit(&mut command);
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyfilter");
        let pipe = child.stderr.take().expect("stderr piped");
        let child = KillOnDrop(child);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// A server on a kernel-chosen port with metrics on a free port (retried
    /// if another process takes that port between our probe and the bind).
    pub fn with_metrics(extra: &[&str]) -> (Server, SocketAddr, SocketAddr) {
        for _ in 0..5 {
            let metrics = free_port();
            let metrics_arg = metrics.to_string();
            let mut args = vec![
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                &metrics_arg,
                "--shutdown-grace",
                "1s",
            ];
            args.extend_from_slice(extra);
            let mut server = Server::spawn(&args);
            match server.try_addr() {
                Ok(addr) => return (server, addr, metrics),
                Err(stderr) if stderr.contains("metrics_addr") => continue,
                Err(stderr) => panic!("keyfilter did not start:\n{stderr}"),
            }
        }
        panic!("no free metrics port after 5 attempts");
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for the "keyfilter listening" line and returns the address it
    /// names, or all of stderr if the process exits first.
    pub fn try_addr(&mut self) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("keyfilter listening"))
                .cloned();
            if let Some(line) = found {
                return Ok(first_loopback_addr(&line).expect("the listening line names the address"));
            }
            if self.child.try_wait().expect("try_wait").is_some() {
                self.join_reader();
                return Err(self.stderr_text());
            }
            assert!(
                Instant::now() < deadline,
                "keyfilter did not listen within {STEP:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the "keyfilter listening" line and returns the address it names.
    pub fn addr(&mut self) -> SocketAddr {
        self.try_addr().unwrap_or_else(|stderr| {
            let status = self.child.try_wait().ok().flatten();
            panic!("keyfilter exited ({status:?}) before listening:\n{stderr}")
        })
    }

    /// Waits (bounded) for the process to exit by itself; returns its status
    /// and all of stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let status = wait_bounded(&mut self.child);
        self.join_reader();
        (status, self.stderr_text())
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its status and all of stderr.
    /// [`Server::terminate_blocking`] off the async runtime, which keeps
    /// running meanwhile: the test's client connections must answer the
    /// server's graceful shutdown (HTTP/2 GOAWAY and PING) for it to finish early.
    pub async fn terminate(self) -> (ExitStatus, String) {
        tokio::task::spawn_blocking(move || self.terminate_blocking())
            .await
            .expect("terminate")
    }

    pub fn terminate_blocking(mut self) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit()
    }

    /// Waits for the stderr reader to see EOF (the process has exited).
    fn join_reader(&mut self) {
        self.reader.take().expect("reader").join().expect("stderr reader");
    }
}
