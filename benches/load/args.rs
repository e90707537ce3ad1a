//! Command-line arguments of the load benchmark (after `cargo bench --bench load --`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Which registries to run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// Berth only.
    Berth,
    /// CNCF Distribution only.
    Distribution,
}

/// Load benchmark of issue 9: the same scenarios against Berth and CNCF Distribution,
/// alternating, with both figures and their ratio.
#[derive(Debug, Parser)]
#[command(name = "load", bin_name = "cargo bench --bench load --")]
pub struct Args {
    /// Run against one registry only.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Scenario numbers to run (comma separated, 1-9); default all.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=9))]
    pub scenarios: Vec<u8>,
    /// Multiply sizes and counts by this (e.g. 0.05 for a smoke run); default 1 = issue
    /// 9's under `cargo bench`, 0.01 under `cargo test --benches`.
    #[arg(long)]
    scale: Option<f64>,
    /// Use an already-running Berth at this URL instead of starting one.
    #[arg(long, value_name = "URL")]
    pub berth_url: Option<String>,
    /// Process id of the Berth given by --berth-url, to measure its CPU and memory.
    #[arg(long, value_name = "PID", requires = "berth_url")]
    pub berth_pid: Option<u32>,
    /// Use an already-running Distribution at this URL instead of starting one.
    #[arg(long, value_name = "URL")]
    pub distribution_url: Option<String>,
    /// Process id of the Distribution given by --distribution-url.
    #[arg(long, value_name = "PID", requires = "distribution_url")]
    pub distribution_pid: Option<u32>,
    /// The Distribution binary to start.
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/docker-registry")]
    pub distribution_bin: PathBuf,
    /// User name for Basic challenges and the token endpoint.
    #[arg(long)]
    pub username: Option<String>,
    /// A file holding the password (secrets never ride in a flag's value, visible in
    /// `ps`); or set LOAD_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Also write the Markdown report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A benchmark name filter as `cargo bench FILTER` passes to every bench target: the
    /// load benchmark runs only if its name, `load`, contains it.
    #[arg(hide = true)]
    pub filter: Option<String>,
    /// Whether `cargo bench` started us: it passes `--bench`; `cargo test --benches` does
    /// not, and then (as criterion does) we only check that everything works, at a tiny scale.
    #[arg(skip)]
    pub bench_mode: bool,
}

impl Args {
    /// Parses the process arguments, taking out the `--bench` flag `cargo bench` adds.
    pub fn parse_filtered() -> Self {
        let raw: Vec<_> = std::env::args_os().collect();
        let bench_mode = raw.iter().any(|a| a == "--bench");
        let mut args = Args::parse_from(raw.into_iter().filter(|a| a != "--bench"));
        args.bench_mode = bench_mode;
        args
    }

    /// The scale factor: as given, else 1 under `cargo bench` and 0.01 otherwise.
    pub fn scale(&self) -> f64 {
        self.scale
            .unwrap_or(if self.bench_mode { 1.0 } else { 0.01 })
    }

    /// Whether a `cargo bench FILTER` excludes this benchmark.
    pub fn filtered_out(&self) -> bool {
        self.filter.as_deref().is_some_and(|f| !"load".contains(f))
    }

    /// The scenarios to run, in order.
    pub fn selected(&self, all: &[u8]) -> Vec<u8> {
        if self.scenarios.is_empty() {
            return all.to_vec();
        }
        all.iter()
            .copied()
            .filter(|n| self.scenarios.contains(n))
            .collect()
    }

    /// The password from --password-file or LOAD_PASSWORD.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn password(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)?;
            return Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()));
        }
        Ok(std::env::var("LOAD_PASSWORD").ok())
    }
}
