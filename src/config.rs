//! Layered configuration, later winning: built-in defaults, the TOML file named by
//! `--config`, `BERTH_...` environment variables (nested with `__`, as in
//! `BERTH_RAFT__HEARTBEAT_MS`), then command-line flags.

use std::path::Path;

use anyhow::Context;
use berth_registry::Config;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use crate::cli::ServeArgs;

/// Top-level settings that `BERTH_<NAME>` may set; other `BERTH_` variables (test and
/// client settings such as `BERTH_PASSWORD`) are not configuration of `serve`.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "storage_url",
    "storage_dir",
    "advertise",
    "shutdown_grace_secs",
    "admin_password",
    "admin_password_file",
];
/// Sections that `BERTH_<SECTION>__<FIELD>` may set.
const ENV_SECTIONS: &[&str] = &[
    "raft", "cluster", "auth", "limits", "log", "storage", "tls", "gc",
];

/// The effective configuration of `berth serve`.
///
/// # Errors
/// A missing or malformed file, a malformed variable or flag, or a failed validation.
pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &args.config {
        fig = fig.merge(Toml::string(&read_file(path)?));
    }
    fig = fig.merge(Env::prefixed("BERTH_").split("__").filter(|key| {
        // Keys may arrive as typed (`DATA_DIR`, `RAFT__HEARTBEAT_MS`): normalise first.
        let key = key.as_str().to_ascii_lowercase().replace("__", ".");
        ENV_KEYS.contains(&key.as_str())
            || ENV_SECTIONS
                .iter()
                .any(|s| key.starts_with(&format!("{s}.")))
    }));
    if let Some(v) = args.listen {
        fig = fig.merge(Serialized::default("listen", v));
    }
    if let Some(v) = &args.data_dir {
        fig = fig.merge(Serialized::default("data_dir", v));
    }
    if let Some(v) = &args.storage_dir {
        fig = fig.merge(Serialized::default("storage_dir", v));
    }
    if let Some(v) = &args.storage_url {
        fig = fig.merge(Serialized::default("storage_url", v));
    }
    if let Some(v) = &args.advertise {
        fig = fig.merge(Serialized::default("advertise", v));
    }
    if let Some(v) = &args.join {
        fig = fig.merge(Serialized::default("cluster.join", v));
    }
    if let Some(v) = &args.join_token {
        fig = fig.merge(Serialized::default("cluster.join_token", v));
    }
    if let Some(v) = &args.join_token_file {
        fig = fig.merge(Serialized::default("cluster.join_token_file", v));
    }
    if let Some(v) = &args.tls {
        fig = fig.merge(Serialized::default("tls.mode", v));
    }
    if let Some(v) = &args.tls_dir {
        fig = fig.merge(Serialized::default("tls.dir", v));
    }
    if !args.san.is_empty() {
        fig = fig.merge(Serialized::default("tls.san", &args.san));
    }
    if let Some(v) = &args.admin_password_file {
        fig = fig.merge(Serialized::default("admin_password_file", v));
    }
    let cfg: Config = fig.extract().context("invalid configuration")?;
    cfg.validate()?;
    Ok(cfg)
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../berth.example.toml");
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn later_layers_win() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "b.toml",
                "listen = \"127.0.0.1:7000\"\ndata_dir = \"/from-file\"\n",
            )?;
            jail.set_env("BERTH_DATA_DIR", "/from-env");
            jail.set_env("BERTH_RAFT__HEARTBEAT_MS", "100");
            jail.set_env("BERTH_REQUIRE_EXTERNAL", "1");
            let args = ServeArgs {
                config: Some("b.toml".into()),
                storage_dir: Some("/from-flag".into()),
                ..ServeArgs::default()
            };
            let cfg = load(&args).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen.port(), 7000);
            assert_eq!(cfg.data_dir, Path::new("/from-env"));
            assert_eq!(cfg.raft.heartbeat_ms, 100);
            assert_eq!(cfg.storage_dir.as_deref(), Some(Path::new("/from-flag")));
            Ok(())
        });
    }

    #[test]
    fn s3_options_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "b.toml",
                "storage_url = \"s3://bucket/berth\"\n\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n",
            )?;
            jail.set_env("BERTH_STORAGE__S3__REGION", "eu-west-1");
            jail.set_env("BERTH_STORAGE__S3__MAX_RETRIES", "2");
            let args = ServeArgs {
                config: Some("b.toml".into()),
                ..ServeArgs::default()
            };
            let cfg = load(&args).map_err(|e| e.to_string())?;
            let s3 = &cfg.storage.s3;
            assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
            assert_eq!(s3.allow_http, Some(true));
            assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
            assert_eq!(s3.max_retries, Some(2));
            assert_eq!(
                cfg.storage().map_err(|e| e.to_string())?.to_string(),
                "s3://bucket/berth"
            );
            Ok(())
        });
    }

    #[test]
    fn gcs_and_azure_options_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "b.toml",
                "storage_url = \"az://images/berth\"\n\n[storage.azure]\naccount = \"myaccount\"\naccess_key_file = \"/run/secrets/azure-key\"\n\n[storage.gcs]\nbase_url = \"http://127.0.0.1:4443\"\n",
            )?;
            jail.set_env("BERTH_STORAGE__AZURE__MAX_RETRIES", "3");
            jail.set_env(
                "BERTH_STORAGE__GCS__SERVICE_ACCOUNT_PATH",
                "/run/secrets/gcs.json",
            );
            let args = ServeArgs {
                config: Some("b.toml".into()),
                ..ServeArgs::default()
            };
            let cfg = load(&args).map_err(|e| e.to_string())?;
            let azure = &cfg.storage.azure;
            assert_eq!(azure.account.as_deref(), Some("myaccount"));
            assert_eq!(
                azure.access_key_file.as_deref(),
                Some(Path::new("/run/secrets/azure-key"))
            );
            assert_eq!(azure.max_retries, Some(3));
            let gcs = &cfg.storage.gcs;
            assert_eq!(gcs.base_url.as_deref(), Some("http://127.0.0.1:4443"));
            assert_eq!(
                gcs.service_account_path.as_deref(),
                Some(Path::new("/run/secrets/gcs.json"))
            );
            assert_eq!(
                cfg.storage().map_err(|e| e.to_string())?.to_string(),
                "az://images/berth"
            );
            jail.set_env("BERTH_STORAGE_URL", "gs://my-bucket/berth");
            let cfg = load(&args).map_err(|e| e.to_string())?;
            assert_eq!(
                cfg.storage().map_err(|e| e.to_string())?.to_string(),
                "gs://my-bucket/berth"
            );
            Ok(())
        });
    }

    #[test]
    fn tls_flags_set_the_tls_section() {
        let args = ServeArgs {
            tls: Some("auto".into()),
            tls_dir: Some("/etc/berth/tls".into()),
            san: vec!["reg.example".into(), "10.0.0.5".into()],
            ..ServeArgs::default()
        };
        let cfg = load(&args).unwrap();
        assert_eq!(cfg.tls.mode, berth_registry::config::TlsMode::Auto);
        assert_eq!(cfg.tls_dir(), Path::new("/etc/berth/tls"));
        assert_eq!(cfg.tls.san, ["reg.example", "10.0.0.5"]);
        let bad = ServeArgs {
            tls: Some("maybe".into()),
            ..ServeArgs::default()
        };
        assert!(load(&bad).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("b.toml", "listne = \"127.0.0.1:7000\"\n")?;
            let args = ServeArgs {
                config: Some("b.toml".into()),
                ..ServeArgs::default()
            };
            assert!(load(&args).is_err());
            Ok(())
        });
    }
}
