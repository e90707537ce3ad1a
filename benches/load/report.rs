//! The Markdown report: one table of figures (both registries and their ratio), one of
//! wall and CPU time per scenario (to tell when the client was the bottleneck), one of each
//! process's totals, and the problems met. Formats only; measures nothing.

use std::fmt::Write as _;

/// Which direction of a figure is the good one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Latency and durations: less is better.
    Lower,
}

/// One figure of one scenario on one server.
#[derive(Debug, Clone)]
pub struct Metric {
    /// What it measures (e.g. "manifest PUT, distinct tags, c=16").
    pub label: String,
    /// Unit (e.g. "req/s", "ms p99").
    pub unit: &'static str,
    /// Which direction is better.
    pub better: Better,
    /// The value.
    pub value: f64,
}

/// What one scenario on one server produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The figures.
    pub metrics: Vec<Metric>,
    /// Wall seconds of the timed part.
    pub wall_s: f64,
    /// Server CPU seconds during the timed part, if its process is known.
    pub server_cpu_s: Option<f64>,
    /// Benchmark-client CPU seconds during the timed part.
    pub client_cpu_s: f64,
    /// Remarks worth a reader's attention (a time bound reached, pagination ignored).
    pub notes: Vec<String>,
}

/// The result of one scenario on one server: figures or why there are none.
pub type ScenarioResult = Result<Outcome, String>;

/// One server's results and totals.
#[derive(Debug)]
pub struct ServerColumn {
    /// `Berth` or `Distribution`.
    pub name: &'static str,
    /// Version string, for the header.
    pub version: String,
    /// (scenario number, result) in run order.
    pub results: Vec<(u8, ScenarioResult)>,
    /// CPU seconds of the whole run (setup included), if known.
    pub total_cpu_s: Option<f64>,
    /// Peak resident memory (VmHWM), if known.
    pub peak_mib: Option<f64>,
}

/// Everything the report needs.
#[derive(Debug)]
pub struct Report {
    /// Machine description lines.
    pub machine: Vec<String>,
    /// The command line, for reproduction.
    pub command: String,
    /// Scale factor used.
    pub scale: f64,
    /// Berth first, then Distribution (either may be absent).
    pub servers: Vec<ServerColumn>,
    /// The client's CPU seconds over the whole run and its peak memory.
    pub client_total_cpu_s: f64,
    /// The client's peak resident memory.
    pub client_peak_mib: Option<f64>,
    /// Notes printed under the tables.
    pub notes: Vec<String>,
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(fmt_value).unwrap_or_else(|| "-".into())
}

impl Report {
    fn column(&self, name: &str) -> Option<&ServerColumn> {
        self.servers.iter().find(|s| s.name == name)
    }

    fn result(&self, name: &str, scenario: u8) -> Option<&ScenarioResult> {
        self.column(name)?
            .results
            .iter()
            .find(|(n, _)| *n == scenario)
            .map(|(_, r)| r)
    }

    fn scenarios(&self) -> Vec<u8> {
        let mut all: Vec<u8> = Vec::new();
        for s in &self.servers {
            for (n, _) in &s.results {
                if !all.contains(n) {
                    all.push(*n);
                }
            }
        }
        all
    }

    /// Renders the whole report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### Load benchmark: Berth against CNCF Distribution\n");
        for line in &self.machine {
            let _ = writeln!(out, "- {line}");
        }
        for s in &self.servers {
            let _ = writeln!(out, "- {}: {}", s.name, s.version);
        }
        let _ = writeln!(
            out,
            "- scale: {} (1 = the sizes and counts of issue 9)",
            self.scale
        );
        let _ = writeln!(out, "- command: `{}`\n", self.command);

        let _ = writeln!(
            out,
            "| # | scenario | unit | better | Berth | Distribution | Berth / Distribution |"
        );
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|");
        for n in self.scenarios() {
            let b = self.result("Berth", n);
            let d = self.result("Distribution", n);
            let labels: Vec<(String, &'static str, Better)> = [b, d]
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_ref().ok())
                .flat_map(|o| {
                    o.metrics
                        .iter()
                        .map(|m| (m.label.clone(), m.unit, m.better))
                })
                .fold(Vec::new(), |mut acc, l| {
                    if !acc
                        .iter()
                        .any(|a: &(String, &str, Better)| a.0 == l.0 && a.1 == l.1)
                    {
                        acc.push(l);
                    }
                    acc
                });
            if labels.is_empty() {
                let cell = |r: Option<&ScenarioResult>| match r {
                    Some(Err(_)) => "failed",
                    _ => "-",
                };
                let _ = writeln!(
                    out,
                    "| {n} | {} | | | {} | {} | - |",
                    scenario_name(n),
                    cell(b),
                    cell(d)
                );
                continue;
            }
            for (label, unit, better) in labels {
                let value = |r: Option<&ScenarioResult>| -> (String, Option<f64>) {
                    match r {
                        None => ("-".into(), None),
                        Some(Err(_)) => ("failed".into(), None),
                        Some(Ok(o)) => match o
                            .metrics
                            .iter()
                            .find(|m| m.label == label && m.unit == unit)
                        {
                            Some(m) => (fmt_value(m.value), Some(m.value)),
                            None => ("-".into(), None),
                        },
                    }
                };
                let (bs, bv) = value(b);
                let (ds, dv) = value(d);
                let ratio = match (bv, dv) {
                    (Some(b), Some(d)) if d != 0.0 => format!("{:.2}", b / d),
                    _ => "-".into(),
                };
                let better = match better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                };
                let _ = writeln!(
                    out,
                    "| {n} | {label} | {unit} | {better} | {bs} | {ds} | {ratio} |"
                );
            }
        }
        let _ = writeln!(
            out,
            "\nRatios above 1 favour Berth where higher is better (throughput); below 1 where \
             lower is better (latency, seconds). MB = 10^6 bytes.\n"
        );

        let _ = writeln!(out, "Timed part of each scenario: wall seconds and CPU seconds (user + system) of the server and of the benchmark client.\n");
        let _ = writeln!(out, "| # | Berth wall s | Berth CPU s | client CPU s | Distribution wall s | Distribution CPU s | client CPU s |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for n in self.scenarios() {
            let cells = |name: &str| match self.result(name, n) {
                Some(Ok(o)) => format!(
                    "{} | {} | {}",
                    fmt_value(o.wall_s),
                    opt(o.server_cpu_s),
                    fmt_value(o.client_cpu_s)
                ),
                Some(Err(_)) => "failed | - | -".into(),
                None => "- | - | -".into(),
            };
            let _ = writeln!(
                out,
                "| {n} | {} | {} |",
                cells("Berth"),
                cells("Distribution")
            );
        }
        let _ = writeln!(
            out,
            "\nWith 2 cores, server CPU + client CPU close to 2 x wall means the machine was saturated; \
             client CPU close to or above the server's means the client may have been the bottleneck.\n"
        );

        let _ = writeln!(
            out,
            "| process | CPU s (whole run, setup included) | peak memory MiB (VmHWM) |"
        );
        let _ = writeln!(out, "|---|---:|---:|");
        for s in &self.servers {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.name,
                opt(s.total_cpu_s),
                opt(s.peak_mib)
            );
        }
        let _ = writeln!(
            out,
            "| benchmark client | {} | {} |",
            fmt_value(self.client_total_cpu_s),
            opt(self.client_peak_mib)
        );

        let problems: Vec<String> = self
            .servers
            .iter()
            .flat_map(|s| {
                s.results.iter().flat_map(move |(n, r)| match r {
                    Err(e) => vec![format!("{} scenario {n} failed: {e}", s.name)],
                    Ok(o) => o
                        .notes
                        .iter()
                        .map(|note| format!("{} scenario {n}: {note}", s.name))
                        .collect(),
                })
            })
            .collect();
        if !problems.is_empty() || !self.notes.is_empty() {
            let _ = writeln!(out);
            for p in problems.iter().chain(&self.notes) {
                let _ = writeln!(out, "- {}", p.replace('\n', " / "));
            }
        }
        out
    }
}

/// A scenario's short name, for rows without figures.
pub fn scenario_name(n: u8) -> &'static str {
    match n {
        1 => "monolithic push",
        2 => "chunked push",
        3 => "pull",
        4 => "small blob pushes",
        5 => "manifest PUT",
        6 => "manifest GET",
        7 => "blob HEAD",
        8 => "tag listing",
        9 => "concurrent pulls",
        _ => "unknown",
    }
}
