//! `berth serve`: run a replica until SIGTERM or Ctrl-C.

use anyhow::Context;
use berth_registry::service::{AdminBootstrap, ADMIN_USER};
use berth_registry::Server;

use crate::cli::ServeArgs;
use crate::{config, logging};

/// Starts the replica, prints the readiness line, serves until told to stop.
///
/// # Errors
/// Invalid configuration, an unusable data directory or storage, a failed bind.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = config::load(&args)?;
    if args.print_config {
        #[allow(clippy::print_stdout)] // CLI output
        {
            println!(
                "{}",
                toml::to_string_pretty(&cfg).context("printing the configuration")?
            );
        }
        return Ok(());
    }
    logging::init(&cfg.log);
    let server = Server::start(&cfg).await?;
    let addr = server.local_addr();
    let report = server.report();
    if let Some(joined) = &report.joined {
        eprintln!(
            "joined the cluster as replica {}; it has {} replicas",
            joined.replica_id, joined.replicas
        );
        if let Some(advice) = super::replica_count_advice(joined.replicas) {
            eprintln!("{advice}");
        }
    }
    if let (Some(AdminBootstrap::Generated(password)), Some(file)) =
        (&report.admin, &report.admin_password_file)
    {
        // Shown once; the file (mode 0600) keeps it for the operator.
        eprintln!(
            "created the administrator `{ADMIN_USER}` with the password {password} \
             (also in {}, readable only by its owner)",
            file.display()
        );
    }
    let mut ready = serde_json::json!({
        "event": "ready",
        "http": addr.to_string(),
        "tls": report.tls,
        "replica_id": report.replica_id,
        "cluster_id": report.cluster_id,
        "replicas": server.replica_count(),
    });
    if let Some(fingerprint) = &report.ca_sha256 {
        // Clients trust the CA served at /ca.pem after comparing it with this.
        ready["ca_sha256"] = fingerprint.clone().into();
        tracing::info!(ca_sha256 = %fingerprint, "clients trust the CA served at /ca.pem");
    }
    // The one line scripts and tests wait for (port 0 picks the port).
    #[allow(clippy::print_stdout)]
    {
        println!("{ready}");
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "berth is serving");
    server.serve(shutdown_signal()).await?;
    tracing::info!("berth stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
