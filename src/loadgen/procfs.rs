//! Process and machine figures from `/proc` (Linux): CPU time and resident
//! memory of the server under test and of the load generator itself, and the
//! load average, so a report says how busy the machine was.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS` or `VmHWM` (peak RSS).
pub fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// What the server process did during a run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// The process measured (`--server-pid`).
    pub pid: u32,
    /// CPU seconds (user + system) it used during the run.
    pub cpu_s: f64,
    /// Resident set size before and after the run, in KiB.
    pub rss_kb_before: u64,
    /// See `rss_kb_before`.
    pub rss_kb_after: u64,
    /// Peak resident set size since the process started (`VmHWM`), before and after the run.
    pub hwm_kb_before: u64,
    /// See `hwm_kb_before`.
    pub hwm_kb_after: u64,
    /// Largest `VmRSS` seen while sampling every 50 ms during the run.
    pub rss_kb_max_sampled: u64,
}

/// Samples the server's RSS in the background between [`ServerProbe::start`] and [`ServerProbe::finish`].
pub struct ServerProbe {
    pid: u32,
    cpu_before: f64,
    rss_before: u64,
    hwm_before: u64,
    max_rss: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl ServerProbe {
    /// Starts probing `pid`; fails when it is not a readable process.
    pub fn start(pid: u32) -> anyhow::Result<ServerProbe> {
        let p = pid.to_string();
        let read = || -> Option<(f64, u64, u64)> {
            Some((cpu_seconds(&p)?, status_kb(&p, "VmRSS")?, status_kb(&p, "VmHWM")?))
        };
        let (cpu_before, rss_before, hwm_before) =
            read().ok_or_else(|| anyhow::anyhow!("--server-pid {pid}: cannot read /proc/{pid}/stat and status"))?;
        let max_rss = Arc::new(AtomicU64::new(rss_before));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (max_rss, stop) = (max_rss.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_kb(&p, "VmRSS") {
                        max_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Ok(ServerProbe {
            pid,
            cpu_before,
            rss_before,
            hwm_before,
            max_rss,
            stop,
            sampler: Some(sampler),
        })
    }

    /// Stops sampling and reports.
    pub fn finish(mut self) -> Option<ServerUsage> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let p = self.pid.to_string();
        let rss_after = status_kb(&p, "VmRSS")?;
        Some(ServerUsage {
            pid: self.pid,
            cpu_s: cpu_seconds(&p)? - self.cpu_before,
            rss_kb_before: self.rss_before,
            rss_kb_after: rss_after,
            hwm_kb_before: self.hwm_before,
            hwm_kb_after: status_kb(&p, "VmHWM")?,
            rss_kb_max_sampled: self.max_rss.load(Ordering::Relaxed).max(rss_after),
        })
    }
}
