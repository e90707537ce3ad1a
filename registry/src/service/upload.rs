//! Pushing blobs: upload sessions (monolithic, streamed, chunked, resumable) and
//! cross-repository mounts. A blob is linked to the repository only after storage holds
//! its verified bytes durably.

use berth_oci::{Digest, RepoName};
use bytes::Bytes;
use futures::Stream;

use super::{Error, Registry, Result};
use crate::storage::{SessionOf, UploadId, UploadState};

/// Where an upload session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// The session.
    pub id: UploadId,
    /// Bytes received so far.
    pub offset: u64,
}

/// What a mount request led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now linked to the target repository.
    Mounted,
    /// The source did not have it: a new upload session was started instead.
    Started(UploadProgress),
}

impl Registry {
    /// Opens an upload session for `repo` (OCI end-4a).
    ///
    /// # Errors
    /// Storage failures.
    #[tracing::instrument(skip(self), fields(%repo))]
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        owner: Option<&str>,
    ) -> Result<UploadProgress> {
        let (id, state) = self
            .uploads
            .start_owned(repo, owner.map(str::to_owned), super::now_ms())
            .await?;
        Ok(UploadProgress {
            id,
            offset: state.offset,
        })
    }

    /// Stores a whole blob in one request and links it (OCI end-4b, monolithic POST).
    ///
    /// # Errors
    /// [`Error::DigestMismatch`], [`Error::Body`], failures.
    #[tracing::instrument(skip(self, body), fields(%repo, %digest))]
    pub async fn put_blob<S>(&self, repo: &RepoName, digest: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let size = self.uploads.put_whole(digest, body).await?;
        self.link_blob(repo, digest, size).await?;
        Ok(size)
    }

    /// Links a blob that `from` has into `repo` (OCI end-11). When `from` cannot show it,
    /// a new session is started, as the spec asks (202).
    ///
    /// # Errors
    /// Failures only: a blob missing in `from` is not an error here.
    #[tracing::instrument(skip(self), fields(%repo, %digest))]
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        owner: Option<&str>,
    ) -> Result<MountOutcome> {
        if let Some(from) = from {
            match self.stat_blob(from, digest).await {
                Ok(stat) => match self.link_blob(repo, digest, stat.size).await {
                    Ok(()) => return Ok(MountOutcome::Mounted),
                    // Garbage collection deleted the bytes under the mount: ask for them.
                    Err(Error::Unavailable) => {}
                    Err(other) => return Err(other),
                },
                Err(Error::BlobUnknown(_)) => {}
                Err(other) => return Err(other),
            }
        }
        self.start_upload(repo, owner)
            .await
            .map(MountOutcome::Started)
    }

    /// Where a session stands (OCI end-13).
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] for an id not of this repository.
    pub async fn upload_status(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: Option<&str>,
    ) -> Result<UploadProgress> {
        let state = self.session(repo, id, owner).await?;
        Ok(UploadProgress {
            id: *id,
            offset: state.offset,
        })
    }

    /// Appends a chunk, or the whole stream (OCI end-5). `start` comes from
    /// `Content-Range` when the client sent one.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`], [`Error::ChunkOutOfOrder`], [`Error::Body`], failures.
    #[tracing::instrument(skip(self, body), fields(%repo, %id))]
    pub async fn append_upload<S>(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: Option<&str>,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadProgress>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let whose = SessionOf { repo, owner };
        let state = self.uploads.append_as(id, Some(whose), start, body).await?;
        Ok(UploadProgress {
            id: *id,
            offset: state.offset,
        })
    }

    /// Closes a session with an optional last chunk, verifies the digest, stores the blob
    /// and links it (OCI end-6). Returns its size.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`], [`Error::DigestMismatch`], failures.
    #[tracing::instrument(skip(self, body), fields(%repo, %id, %digest))]
    pub async fn finish_upload<S>(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: Option<&str>,
        digest: &Digest,
        start: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let whose = SessionOf { repo, owner };
        let size = self
            .uploads
            .finish_as(id, Some(whose), digest, start, body)
            .await?;
        self.link_blob(repo, digest, size).await?;
        Ok(size)
    }

    /// Abandons a session and its bytes (OCI end-14).
    ///
    /// # Errors
    /// [`Error::UploadUnknown`], failures.
    pub async fn cancel_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: Option<&str>,
    ) -> Result<()> {
        self.session(repo, id, owner).await?;
        self.uploads.cancel(id).await?;
        Ok(())
    }

    /// The session, if it belongs to `repo` and to `owner`: another repository or another
    /// user gets "unknown", exactly as for an id that never existed.
    async fn session(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: Option<&str>,
    ) -> Result<UploadState> {
        let state = self.uploads.state(id).await?;
        if !(SessionOf { repo, owner }).matches(&state) {
            return Err(Error::UploadUnknown);
        }
        Ok(state)
    }
}
