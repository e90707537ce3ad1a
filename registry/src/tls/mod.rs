//! TLS of a replica (`tls.mode`): which certificate the listener serves, which CA the replica
//! RPC trusts, and `GET /ca.pem`.
//!
//! - `off`: plain HTTP.
//! - `bundle`: the operator's `ca.pem`, `cert.pem` (the chain, leaf first) and `key.pem` in
//!   `tls.dir`, checked at start (the chain must lead to `ca.pem`, the key must match).
//!   Replicas trust `ca.pem`.
//! - `auto`: the cluster's own root CA, kept in the replicated metadata. The replica that
//!   creates the cluster makes it and stores it (first proposer wins); a joining replica learns
//!   it through its join token (see `berth_raft`'s `node::ca`). Each replica issues its own
//!   server certificate from it, keeps it in `tls.dir` (`ca.pem`, `cert.pem`, `key.pem`, the key
//!   private to its owner) and renews it at start when it is within 30 days of expiry, was
//!   issued by another CA, or names other hosts than configured.
//!
//! Start-up runs in two steps around the metadata node's start: [`prepare`] (before: read the
//! bundle, or make a candidate CA) and [`finish`] (after: settle the cluster CA, issue or renew
//! the server certificate).

mod listener;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use berth_auth::tls::{self as material, CertAndKey};
use berth_raft::{ca_fingerprint, ClusterCa, MetaError, MetaNode, PeerTls, CA_PEM_PATH};
use tokio_rustls::rustls::ServerConfig;

use crate::config::{Config, TlsMode};
use crate::server::StartupError;

pub(crate) use listener::TlsListener;

/// File names in `tls.dir`, the same in both modes.
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
/// How long the first replica of a cluster waits for itself to lead, to store the CA.
const STORE_CA_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`prepare`] found or made before the metadata node starts.
#[derive(Debug)]
pub(crate) struct Prepared {
    mode: TlsMode,
    /// `bundle`: the operator's CA and server certificate.
    bundle: Option<(String, CertAndKey)>,
    /// `auto`: the CA this replica stores if the cluster has none.
    candidate: Option<CertAndKey>,
}

/// What the listener serves with TLS on.
#[derive(Debug)]
pub(crate) struct Serving {
    /// The listener's rustls configuration.
    pub config: Arc<ServerConfig>,
    /// The CA certificate clients should trust (PEM), served at `/ca.pem`.
    pub ca_pem: String,
    /// Its SHA-256 fingerprint (hex).
    pub ca_sha256: String,
}

fn tls_error(what: impl std::fmt::Display) -> StartupError {
    StartupError::Tls(what.to_string())
}

impl Prepared {
    /// Whether the listener serves TLS.
    pub(crate) fn enabled(&self) -> bool {
        self.mode != TlsMode::Off
    }

    /// How the replica RPC checks peers.
    pub(crate) fn peer_tls(&self) -> PeerTls {
        match (&self.bundle, &self.candidate) {
            (Some((ca_pem, _)), _) => PeerTls::Ca(ca_pem.clone()),
            (None, Some(candidate)) => PeerTls::ClusterCa {
                new_ca: candidate.cert_pem.clone(),
            },
            (None, None) => PeerTls::Off,
        }
    }
}

/// Step 1, before the metadata node starts: reads and checks the bundle (`bundle`) or makes a
/// candidate CA (`auto`; used only if the cluster has none yet).
///
/// # Errors
/// [`StartupError::Tls`] for a missing, unreadable or inconsistent bundle.
pub(crate) fn prepare(cfg: &Config) -> Result<Prepared, StartupError> {
    let dir = cfg.tls_dir();
    match cfg.tls.mode {
        TlsMode::Off => Ok(Prepared {
            mode: TlsMode::Off,
            bundle: None,
            candidate: None,
        }),
        TlsMode::Bundle => {
            let ca_pem = read_pem(&dir.join(CA_FILE))?;
            let server = CertAndKey {
                cert_pem: read_pem(&dir.join(CERT_FILE))?,
                key_pem: read_pem(&dir.join(KEY_FILE))?,
            };
            material::check_chain(&server.cert_pem, &ca_pem).map_err(|e| {
                tls_error(format!(
                    "{} is not trusted by {}: {e}",
                    dir.join(CERT_FILE).display(),
                    dir.join(CA_FILE).display()
                ))
            })?;
            Ok(Prepared {
                mode: TlsMode::Bundle,
                bundle: Some((ca_pem, server)),
                candidate: None,
            })
        }
        TlsMode::Auto => Ok(Prepared {
            mode: TlsMode::Auto,
            bundle: None,
            candidate: Some(
                material::generate_ca(&format!("Berth cluster CA {}", random_tag()))
                    .map_err(tls_error)?,
            ),
        }),
    }
}

/// A short random tag that tells one cluster's CA from another's in a trust store.
fn random_tag() -> String {
    let mut bytes = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Step 2, after the metadata node started and before serving: settles the cluster CA
/// (`auto`), issues or renews this replica's server certificate, and builds the listener's
/// configuration. `None` with TLS off.
///
/// # Errors
/// [`StartupError::Tls`] when the CA cannot be stored or material cannot be written or used.
pub(crate) async fn finish(
    prepared: Prepared,
    cfg: &Config,
    meta: &MetaNode,
    advertise_url: &str,
) -> Result<Option<Serving>, StartupError> {
    let (ca_pem, server) = match (prepared.bundle, prepared.candidate) {
        (Some(bundle), _) => {
            warn_if_not_named(&bundle.1.cert_pem, advertise_url);
            bundle
        }
        (None, Some(candidate)) => auto(cfg, meta, advertise_url, candidate).await?,
        (None, None) => return Ok(None),
    };
    let config = material::server_config(&server).map_err(tls_error)?;
    let ca_sha256 = ca_fingerprint(&ca_pem)
        .ok_or_else(|| tls_error("the CA certificate holds no certificate"))?;
    Ok(Some(Serving {
        config: Arc::new(config),
        ca_pem,
        ca_sha256,
    }))
}

/// `auto`: the cluster CA (stored by this replica if the cluster has none) and a current server
/// certificate from it.
async fn auto(
    cfg: &Config,
    meta: &MetaNode,
    advertise_url: &str,
    candidate: CertAndKey,
) -> Result<(String, CertAndKey), StartupError> {
    let ca = match meta.cluster_ca().await? {
        Some(ca) => ca,
        None => store_ca(meta, candidate).await?,
    };
    // The replica RPC client was built before the CA was settled: it must trust this one.
    if meta.peer_ca_pem().and_then(ca_fingerprint) != ca_fingerprint(&ca.cert_pem) {
        return Err(tls_error(
            "another replica stored the cluster CA while this one started; start it again",
        ));
    }
    let dir = cfg.tls_dir();
    std::fs::create_dir_all(&dir).map_err(|e| tls_error(format!("{}: {e}", dir.display())))?;
    write_atomic(&dir.join(CA_FILE), &ca.cert_pem, false)?;

    let names = server_names(cfg, advertise_url);
    let current = match (
        std::fs::read_to_string(dir.join(CERT_FILE)),
        std::fs::read_to_string(dir.join(KEY_FILE)),
    ) {
        (Ok(cert_pem), Ok(key_pem)) => Some(CertAndKey { cert_pem, key_pem }),
        _ => None,
    };
    let reason = current.as_ref().and_then(|current| {
        material::renewal_reason(&current.cert_pem, &ca.cert_pem, &names, SystemTime::now())
    });
    let server = match (current, reason) {
        (Some(current), None) => current,
        (_, reason) => {
            let reason = reason.unwrap_or_else(|| "this replica has none yet".to_owned());
            let issuer = CertAndKey {
                cert_pem: ca.cert_pem.clone(),
                key_pem: ca.key_pem.clone(),
            };
            let server = material::issue_server_cert(&issuer, &names).map_err(tls_error)?;
            // The key first: a certificate on disk always has its key beside it.
            write_atomic(&dir.join(KEY_FILE), &server.key_pem, true)?;
            write_atomic(&dir.join(CERT_FILE), &server.cert_pem, false)?;
            tracing::info!(?names, %reason, dir = %dir.display(), "issued a server certificate from the cluster CA");
            server
        }
    };
    Ok((ca.cert_pem, server))
}

/// Warns when the bundle's certificate does not name the advertised host: the other replicas
/// would refuse it.
fn warn_if_not_named(cert_pem: &str, advertise_url: &str) {
    let (Ok(names), Some(host)) = (material::names_of(cert_pem), url_host(advertise_url)) else {
        return;
    };
    if !names_cover(&names, &host) {
        tracing::warn!(%host, ?names, "the bundle's certificate does not name the advertised host: other replicas will refuse it (set --advertise)");
    }
}

/// Whether a certificate for `names` is valid for `host` (a `*.` wildcard covers one label).
fn names_cover(names: &[String], host: &str) -> bool {
    let host = normalize(host);
    names.iter().any(|name| {
        let name = normalize(name);
        name == host
            || name.strip_prefix("*.").is_some_and(|domain| {
                host.split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == domain)
            })
    })
}

/// Stores `candidate` as the cluster CA, waiting (bounded) for this replica's cluster to elect
/// a leader; answers the cluster's CA (another replica's, if it stored one first).
async fn store_ca(meta: &MetaNode, candidate: CertAndKey) -> Result<ClusterCa, StartupError> {
    let candidate = ClusterCa {
        cert_pem: candidate.cert_pem,
        key_pem: candidate.key_pem,
    };
    let deadline = tokio::time::Instant::now() + STORE_CA_TIMEOUT;
    loop {
        match meta.store_cluster_ca(candidate.clone()).await {
            Ok(ca) => {
                if ca == candidate {
                    tracing::info!("created the cluster CA");
                }
                return Ok(ca);
            }
            Err(MetaError::Unavailable) if tokio::time::Instant::now() < deadline => {
                tracing::info!("waiting for a leader to store the cluster CA");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(tls_error(format!("storing the cluster CA: {e}"))),
        }
    }
}

/// The names of this replica's server certificate: `tls.san` or the defaults, plus the
/// advertise URL's host (peers connect to it), without duplicates.
fn server_names(cfg: &Config, advertise_url: &str) -> Vec<String> {
    let mut names: Vec<String> = if cfg.tls.san.is_empty() {
        let listen = cfg.listen.ip();
        let mut defaults = Vec::new();
        if !listen.is_unspecified() {
            defaults.push(listen.to_string());
        }
        defaults.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
        defaults
    } else {
        cfg.tls.san.iter().map(|n| n.trim().to_owned()).collect()
    };
    if let Some(host) = url_host(advertise_url) {
        names.push(host);
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(normalize(n)));
    names
}

fn normalize(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// The host of `scheme://host[:port][/...]`, brackets of an IPv6 address removed.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

fn read_pem(path: &Path) -> Result<String, StartupError> {
    std::fs::read_to_string(path).map_err(|e| {
        tls_error(format!(
            "cannot read {} (tls.mode bundle needs ca.pem, cert.pem and key.pem in tls.dir): {e}",
            path.display()
        ))
    })
}

/// Replaces `path` with `text` durably (a synced temporary file, renamed); `private`: mode
/// 0600. Unchanged content is not rewritten.
fn write_atomic(path: &Path, text: &str, private: bool) -> Result<(), StartupError> {
    use std::io::Write as _;
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let fail = |e: std::io::Error| tls_error(format!("writing {}: {e}", path.display()));
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)
}

/// `GET /ca.pem`: the CA certificate clients should trust.
pub(crate) fn ca_router(ca_pem: String) -> Router {
    let ca_pem: Arc<str> = ca_pem.into();
    Router::new().route(
        CA_PEM_PATH,
        get(move || {
            let ca_pem = Arc::clone(&ca_pem);
            async move {
                (
                    [(CONTENT_TYPE, "application/x-pem-file")],
                    ca_pem.to_string(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://10.0.0.5:5000").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            url_host("https://reg.example/x").as_deref(),
            Some("reg.example")
        );
        assert_eq!(url_host("https://[::1]:5000/").as_deref(), Some("::1"));
        assert_eq!(url_host("nonsense"), None);
    }

    #[test]
    fn wildcards_cover_one_label() {
        let names = ["*.reg.example".to_owned(), "10.0.0.5".to_owned()];
        assert!(names_cover(&names, "a.reg.example"));
        assert!(names_cover(&names, "A.REG.example"));
        assert!(names_cover(&names, "10.0.0.5"));
        assert!(!names_cover(&names, "reg.example"));
        assert!(!names_cover(&names, "a.b.reg.example"));
        assert!(!names_cover(&names, "10.0.0.6"));
    }

    #[test]
    fn default_names_cover_loopback_and_the_advertised_host() {
        let cfg = Config::default();
        assert_eq!(
            server_names(&cfg, "https://127.0.0.1:5000"),
            ["127.0.0.1", "localhost"]
        );
        let mut cfg = Config {
            listen: "0.0.0.0:5000".parse().unwrap(),
            ..Config::default()
        };
        cfg.tls.san = vec!["reg.example".into(), "REG.example".into()];
        assert_eq!(
            server_names(&cfg, "https://10.0.0.5:5000"),
            ["reg.example", "10.0.0.5"]
        );
    }

    #[test]
    fn auto_prepare_makes_a_candidate_and_bundle_checks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        cfg.tls.mode = TlsMode::Auto;
        let prepared = prepare(&cfg).unwrap();
        assert!(matches!(prepared.peer_tls(), PeerTls::ClusterCa { .. }));

        cfg.tls.mode = TlsMode::Bundle;
        assert!(prepare(&cfg).is_err(), "no bundle yet");
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca = material::generate_ca("Company CA").unwrap();
        let other = material::generate_ca("Other CA").unwrap();
        let server = material::issue_server_cert(&ca, &["reg.example".to_owned()]).unwrap();
        std::fs::write(tls.join(CERT_FILE), &server.cert_pem).unwrap();
        std::fs::write(tls.join(KEY_FILE), &server.key_pem).unwrap();
        std::fs::write(tls.join(CA_FILE), &other.cert_pem).unwrap();
        assert!(prepare(&cfg).is_err(), "a chain to another CA is refused");
        std::fs::write(tls.join(CA_FILE), &ca.cert_pem).unwrap();
        let prepared = prepare(&cfg).unwrap();
        assert_eq!(prepared.peer_tls(), PeerTls::Ca(ca.cert_pem.clone()));
    }

    #[test]
    fn private_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        write_atomic(&path, "secret", true).unwrap();
        write_atomic(&path, "secret", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
