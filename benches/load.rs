//! Load benchmark of issue 9: drives registries over the OCI HTTP API and runs the same
//! nine scenarios against Berth and CNCF Distribution in one run, alternating per scenario,
//! then prints a Markdown table of both figures and their ratio, with CPU seconds and peak
//! memory per process.
//!
//! `cargo bench --bench load -- [--scale 0.05] [--scenarios 1,4,6] [--only berth]`
//! (see `--help`). The parts: `args` (flags), `servers` (start/stop registries), `client`
//! (OCI HTTP + token flow), `data` (generated blobs), `runner` (bounded concurrent loops),
//! `procstat` (CPU and memory from /proc), `scenarios` (the nine), `report` (Markdown).

#[path = "load/args.rs"]
mod args;
#[path = "load/client.rs"]
mod client;
#[path = "load/data.rs"]
mod data;
#[path = "load/procstat.rs"]
mod procstat;
#[path = "load/raw_pull.rs"]
mod raw_pull;
#[path = "load/report.rs"]
mod report;
#[path = "load/runner.rs"]
mod runner;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/servers.rs"]
mod servers;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, ensure, Result};

use args::{Args, Only};
use client::{Client, Credentials};
use procstat::Proc;
use report::{Report, ScenarioResult, ServerColumn};
use scenarios::{Data, Plan, Target};
use servers::Server;

fn main() -> ExitCode {
    let args = Args::parse_filtered();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.filtered_out() {
        eprintln!(
            "load: skipped (filter {:?})",
            args.filter.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let scale = args.scale();
    ensure!(scale > 0.0 && scale <= 10.0, "--scale must be in (0, 10]");
    if !args.bench_mode {
        eprintln!("load: not started by `cargo bench`: a smoke check at scale {scale}");
    }
    let creds = Credentials {
        username: args.username.clone(),
        password: args.password()?,
    };
    let mut notes = Vec::new();
    let mut targets: Vec<(Target, String)> = Vec::new();

    if args.only != Some(Only::Distribution) {
        let (server, version) = match &args.berth_url {
            Some(url) => (
                Server::external("Berth", url, args.berth_pid),
                format!("already running at {url}"),
            ),
            None => {
                let bin = Path::new(env!("CARGO_BIN_EXE_berth"));
                (Server::start_berth(bin)?, berth_version(bin))
            }
        };
        eprintln!("Berth at {}", server.url);
        let client = Client::connect(&server.url, creds.clone()).await?;
        targets.push((Target::new(server, client), version));
    }
    if args.only != Some(Only::Berth) {
        let started = match &args.distribution_url {
            Some(url) => Some((
                Server::external("Distribution", url, args.distribution_pid),
                format!("already running at {url}"),
            )),
            None if !args.distribution_bin.exists() => {
                let msg = format!(
                    "{} not found (install it with `apt-get install -y docker-registry`): \
                     Distribution skipped",
                    args.distribution_bin.display()
                );
                if std::env::var("BERTH_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                    bail!("{msg}; BERTH_REQUIRE_EXTERNAL=1 forbids skipping");
                }
                eprintln!("{msg}");
                notes.push(msg);
                None
            }
            None => {
                let server = Server::start_distribution(&args.distribution_bin).await?;
                let version = servers::version_of(&args.distribution_bin, "--version")
                    .and_then(|v| v.split_whitespace().last().map(str::to_owned))
                    .unwrap_or_else(|| "unknown version".into());
                Some((server, format!("docker-registry {version}")))
            }
        };
        if let Some((server, version)) = started {
            eprintln!("Distribution at {}", server.url);
            let client = Client::connect(&server.url, creds.clone()).await?;
            targets.push((Target::new(server, client), version));
        }
    }
    ensure!(!targets.is_empty(), "no registry to run against");

    let plan = Plan::new(scale);
    let data = Data::new(plan, run_seed());
    let selected = args.selected(&scenarios::ALL);
    let load_before = load_average();
    let mut results: Vec<Vec<(u8, ScenarioResult)>> = targets.iter().map(|_| Vec::new()).collect();

    let run_all = async {
        for &n in &selected {
            for (i, (target, _)) in targets.iter_mut().enumerate() {
                let name = target.server.name;
                eprintln!("[{name}] scenario {n}: {}", report::scenario_name(n));
                let result = scenarios::run(n, target, &data)
                    .await
                    .map_err(|e| format!("{e:#}"));
                match &result {
                    Ok(o) => {
                        for m in &o.metrics {
                            eprintln!("  => {}: {:.3} {}", m.label, m.value, m.unit);
                        }
                    }
                    Err(e) => eprintln!("  => failed: {e}"),
                }
                results[i].push((n, result));
            }
        }
    };
    tokio::select! {
        () = run_all => {}
        _ = tokio::signal::ctrl_c() => bail!("interrupted; stopping the servers started"),
    }

    let servers = targets
        .iter()
        .zip(results)
        .map(|((t, version), results)| {
            let pid = t.server.pid.map(Proc::Pid);
            ServerColumn {
                name: t.server.name,
                version: version.clone(),
                results,
                total_cpu_s: pid.and_then(Proc::cpu_seconds),
                peak_mib: pid.and_then(Proc::peak_mib),
            }
        })
        .collect();
    let mut machine = machine_description();
    machine.push(format!(
        "load average before / after: {load_before} / {}",
        load_average()
    ));
    let report = Report {
        machine,
        command: command_line(),
        scale,
        servers,
        client_total_cpu_s: Proc::Current.cpu_seconds().unwrap_or(0.0),
        client_peak_mib: Proc::Current.peak_mib(),
        notes,
    };
    let text = report.to_markdown();
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
        eprintln!("report written to {}", out.display());
    }
    // Dropping the targets stops the servers started here.
    drop(targets);
    Ok(())
}

/// Makes this run's content unique: the clock mixed with the process id.
fn run_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn berth_version(bin: &Path) -> String {
    let version = servers::version_of(bin, "--version").unwrap_or_else(|| "berth".into());
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match rev {
        Some(rev) => format!("{version} ({rev}, bench profile)"),
        None => format!("{version} (bench profile)"),
    }
}

fn machine_description() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![format!(
        "machine: {model}, {cores} cores, {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        "cargo bench --bench load".into()
    } else {
        format!("cargo bench --bench load -- {}", args.join(" "))
    }
}
