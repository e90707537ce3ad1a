//! Operating the cluster through the admin API: list and remove replicas, make join tokens.

use std::time::Duration;

use berth_raft::ReplicaInfo;

use super::{Registry, Result};

impl Registry {
    /// Every replica with its role, applied index and whether it answers.
    pub async fn replicas(&self) -> Vec<ReplicaInfo> {
        self.meta.replicas().await
    }

    /// Removes replica `id` from the membership; answers how many replicas remain.
    ///
    /// # Errors
    /// [`Error::Membership`](super::Error::Membership) when refused,
    /// [`Error::Unavailable`](super::Error::Unavailable) without a quorum.
    pub async fn remove_replica(&self, id: u64) -> Result<usize> {
        Ok(self.meta.remove_replica(id).await?)
    }

    /// A new join token valid for `ttl` (`None`: no expiry).
    ///
    /// # Errors
    /// [`Error::Unavailable`](super::Error::Unavailable) without a quorum.
    pub async fn create_join_token(&self, ttl: Option<Duration>) -> Result<String> {
        Ok(self.meta.create_join_token(ttl).await?)
    }
}
