//! Who this replica is: `cluster.json` in the node directory, written once when the replica
//! creates or joins a cluster and read at every start.
//!
//! It holds the replica's id and the cluster key, the shared secret every member presents on
//! the replica RPC. The file is private to its owner (mode 0600) and replaced atomically.

use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::db;

/// File name of the identity inside a node's directory.
pub const IDENTITY_FILE: &str = "cluster.json";

/// A replica's identity in its cluster.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Random id of the cluster, fixed when it was created (lowercase hex).
    pub cluster_id: String,
    /// This replica's id, unique in the cluster and never reused.
    pub replica_id: u64,
    /// The shared secret members send on every replica RPC (lowercase hex).
    pub cluster_key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cluster_id", &self.cluster_id)
            .field("replica_id", &self.replica_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new cluster's identity, for the replica that creates it.
    pub(crate) fn new_cluster(replica_id: u64) -> Identity {
        Identity {
            cluster_id: random_hex(16),
            replica_id,
            cluster_key: random_hex(32),
        }
    }

    /// Reads the identity in `dir`, if the replica has one.
    pub(crate) async fn load(dir: &Path) -> std::io::Result<Option<Identity>> {
        match tokio::fs::read(path(dir)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path(dir).display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the identity to `dir` durably: a private temporary file, synced, renamed.
    pub(crate) async fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &json).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path(dir)).await?;
        db::sync_dir(dir).await
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(IDENTITY_FILE)
}

/// `n` random bytes from the OS generator, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Lowercase hex SHA-256 of a secret: what is stored and compared instead of the secret.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saved_identity_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).await.unwrap(), None);
        let id = Identity::new_cluster(1);
        id.save(dir.path()).await.unwrap();
        assert_eq!(Identity::load(dir.path()).await.unwrap(), Some(id.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{id:?}").contains(&id.cluster_key));
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_hex(32), random_hex(32));
        assert_eq!(random_hex(32).len(), 64);
    }
}
