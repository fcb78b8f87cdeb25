//! Readings from /proc: CPU time and resident memory of a process, fd limits, load average.

use std::sync::OnceLock;

/// A process named either by pid or as `self`.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    Own,
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Own => "/proc/self".to_owned(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// Clock ticks per second for utime/stime (`getconf CLK_TCK`, 100 if that fails).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime of the whole process (all threads, live and exited), in seconds.
pub fn cpu_seconds(pid: Pid) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck() as f64)
}

/// VmRSS in KiB.
pub fn rss_kib(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Soft limit on open files of this process.
pub fn nofile_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Number of fds this process has open now.
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// The three load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// A server reading: CPU seconds and RSS, either possibly unavailable.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Snapshot {
    pub cpu_s: Option<f64>,
    pub rss_kib: Option<u64>,
}

/// Sum over several processes (None if any reading fails, or for an empty list).
pub fn snapshot_sum(pids: &[u32]) -> Snapshot {
    if pids.is_empty() {
        return Snapshot::default();
    }
    let mut cpu = Some(0.0);
    let mut rss = Some(0);
    for &pid in pids {
        cpu = cpu.zip(cpu_seconds(Pid::Other(pid))).map(|(a, b)| a + b);
        rss = rss.zip(rss_kib(Pid::Other(pid))).map(|(a, b)| a + b);
    }
    Snapshot {
        cpu_s: cpu,
        rss_kib: rss,
    }
}
