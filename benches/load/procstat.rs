//! CPU time and peak memory of a process, read from Linux `/proc` (`stat` utime + stime,
//! `status` VmHWM). Works for the benchmark's own process (`self`) and for the servers.
//! Reads only; never signals a process.

use std::sync::OnceLock;

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    /// The benchmark client itself.
    Current,
    /// Another process.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Current => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// User + system CPU seconds used so far (all threads), or `None` if unreadable.
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.path("stat")).ok()?;
        // The command name (field 2) may contain spaces: fields after its closing ')'
        // start at field 3, so utime (14) and stime (15) are the 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / clock_ticks())
    }

    /// Peak resident memory (VmHWM) in MiB, or `None` if unreadable.
    pub fn peak_mib(self) -> Option<f64> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told otherwise). Asked
/// once of `getconf` because calling `sysconf` would need `unsafe`, which the workspace forbids.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}
