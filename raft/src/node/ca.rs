//! The cluster CA in the replica RPC: which CA a replica trusts when it calls its peers, how a
//! joining replica learns that CA safely, and storing the CA in the metadata once.
//!
//! # Join tokens and the CA fingerprint
//!
//! A join token is `berth-join-<64 hex>`: the secret, of which only the SHA-256 is stored. In a
//! cluster that has a CA (`--tls auto`), [`MetaNode::create_join_token`] appends
//! `.<SHA-256 of the CA certificate's DER, 64 hex>`. The joining replica does not know the CA
//! yet: it fetches [`CA_PEM_PATH`] from the member without verifying it, checks its
//! fingerprint against the token, and only then trusts it for the admission request and every
//! later call (kubeadm's discovery-token CA cert hash). The suffix is not secret and is stripped
//! before the token is checked, so tokens without one keep working for plain-HTTP clusters.
//!
//! No certificate is generated or parsed beyond PEM decoding here: the registry makes the CA
//! (with `berth-auth`) and hands its certificate over in [`PeerTls`].

use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use super::MetaNode;
use crate::command::{ClusterCommand, MetaCommand, MetaResponse, Redacted, Rejection};
use crate::error::{MembershipError, MetaError};
use crate::network::client;
use crate::reader::ClusterCa;

/// Where every replica serves the CA certificate its clients should trust (PEM). The registry
/// owns the route; the join flow fetches it.
pub const CA_PEM_PATH: &str = "/ca.pem";

/// Length of a fingerprint: SHA-256 in lowercase hex.
const FINGERPRINT_LEN: usize = 64;

/// How long fetching a member's CA certificate may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a replica checks the replicas it calls over the replica RPC (and, when joining, the
/// member it joins through).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum PeerTls {
    /// Plain HTTP (an `https://` peer would be checked against the built-in web roots).
    #[default]
    Off,
    /// HTTPS to peers whose certificates chain to this CA (PEM), e.g. an operator's bundle.
    /// A join needs no fingerprint in its token then.
    Ca(String),
    /// HTTPS to peers whose certificates chain to the cluster CA stored in the metadata. While
    /// none is stored, the replica trusts `new_ca` (PEM: the CA a new cluster is about to
    /// store), or, when it joins, the CA it learnt through the join token's fingerprint.
    ClusterCa {
        /// The certificate of the CA this replica will propose if the cluster has none.
        new_ca: String,
    },
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerTls::Off => "Off",
            PeerTls::Ca(_) => "Ca",
            PeerTls::ClusterCa { .. } => "ClusterCa",
        })
    }
}

/// Lowercase hex SHA-256 of the DER of the first certificate in `cert_pem`; `None` when it
/// holds no certificate.
pub fn ca_fingerprint(cert_pem: &str) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()?
        .ok()?;
    Some(hex::encode(Sha256::digest(der.as_ref())))
}

/// Splits a join token into its secret and the CA fingerprint it carries, if any.
pub(crate) fn split_join_token(token: &str) -> (&str, Option<&str>) {
    match token.rsplit_once('.') {
        Some((secret, fp))
            if !secret.is_empty()
                && fp.len() == FINGERPRINT_LEN
                && fp
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            (secret, Some(fp))
        }
        _ => (token, None),
    }
}

/// `token` with the cluster CA's fingerprint appended.
pub(crate) fn with_fingerprint(token: &str, ca: &ClusterCa) -> String {
    match ca_fingerprint(&ca.cert_pem) {
        Some(fp) => format!("{token}.{fp}"),
        None => token.to_owned(),
    }
}

/// Why discovering a member's CA failed.
pub(crate) enum DiscoveryError {
    /// The member could not be reached; retrying may help.
    Unreachable(String),
    /// The member answered something that cannot be trusted.
    Refused(MembershipError),
}

/// Fetches the CA certificate the member at `url` serves and returns it if its fingerprint is
/// `fingerprint`.
pub(crate) async fn discover_ca(url: &str, fingerprint: &str) -> Result<String, DiscoveryError> {
    let http = client::unverified_client().map_err(|e| {
        DiscoveryError::Refused(MembershipError::Failed(format!("http client: {e}")))
    })?;
    let ca_url = format!("{}{CA_PEM_PATH}", url.trim_end_matches('/'));
    let res = http
        .get(&ca_url)
        .timeout(DISCOVERY_TIMEOUT)
        .send()
        .await
        .map_err(|e| DiscoveryError::Unreachable(format!("fetching {ca_url}: {e}")))?;
    if !res.status().is_success() {
        return Err(DiscoveryError::Refused(MembershipError::Failed(format!(
            "{ca_url} answered {}: the member serves no CA",
            res.status()
        ))));
    }
    let pem = res
        .text()
        .await
        .map_err(|e| DiscoveryError::Unreachable(format!("reading {ca_url}: {e}")))?;
    if ca_fingerprint(&pem).as_deref() != Some(fingerprint) {
        return Err(DiscoveryError::Refused(MembershipError::Failed(format!(
            "the CA certificate served at {ca_url} does not match the join token's fingerprint"
        ))));
    }
    Ok(pem)
}

impl MetaNode {
    /// The cluster's root CA: the one stored in the metadata this replica has applied, else
    /// the one it received when it was admitted (a joining replica that has not caught up).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn cluster_ca(&self) -> Result<Option<ClusterCa>, MetaError> {
        match self.reader().cluster_ca().await? {
            Some(ca) => Ok(Some(ca)),
            None => Ok(self.inner.admitted_ca.clone()),
        }
    }

    /// Stores `ca` as the cluster's root CA unless the cluster has one already; answers the
    /// cluster's CA either way (the first proposer's).
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when the write or the read barrier cannot complete.
    pub async fn store_cluster_ca(&self, ca: ClusterCa) -> Result<ClusterCa, MetaError> {
        let cmd = MetaCommand::Cluster(ClusterCommand::SetClusterCa {
            cert_pem: ca.cert_pem.clone(),
            key_pem: Redacted(ca.key_pem.clone()),
        });
        match self.propose(cmd).await? {
            MetaResponse::Ok => Ok(ca),
            MetaResponse::Rejected(Rejection::ClusterCaExists) => {
                self.read_barrier().await?;
                self.reader().cluster_ca().await?.ok_or_else(|| {
                    MetaError::Corrupt("a cluster CA exists but cannot be read".into())
                })
            }
            other => Err(MetaError::Raft(format!(
                "unexpected answer to storing the cluster CA: {other:?}"
            ))),
        }
    }

    /// The CA certificate (PEM) this replica trusts when it calls its peers, if it uses TLS.
    pub fn peer_ca_pem(&self) -> Option<&str> {
        self.inner.peer_ca_pem.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_only_on_a_fingerprint() {
        let fp = "ab".repeat(32);
        let token = format!("berth-join-0123.{fp}");
        assert_eq!(
            split_join_token(&token),
            ("berth-join-0123", Some(fp.as_str()))
        );
        assert_eq!(
            split_join_token("berth-join-0123"),
            ("berth-join-0123", None)
        );
        // An operator's own token may contain dots; only a 64-hex suffix is a fingerprint.
        assert_eq!(split_join_token("my.secret"), ("my.secret", None));
        let upper = format!("x.{}", "AB".repeat(32));
        assert_eq!(split_join_token(&upper), (upper.as_str(), None));
        assert_eq!(split_join_token(&format!(".{fp}")).1, None);
    }

    #[test]
    fn fingerprint_needs_a_certificate() {
        assert_eq!(ca_fingerprint("not pem"), None);
    }
}
