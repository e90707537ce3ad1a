//! Backups through the admin API: a consistent copy of all metadata, taken on this replica
//! after the read barrier, streamed as a backup file (`berth_raft::backup`).
//!
//! One backup at a time per replica: each holds a copy of the database on disk and, while it
//! derives the key, 128 MiB for scrypt.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use berth_raft::backup::{BackupHeader, Encryption};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{Registry, Result};

/// A backup file on its way out.
pub struct BackupDownload {
    /// What the file says about itself (inside its encryption).
    pub header: BackupHeader,
    /// The file's bytes; the stream ends with an error if writing fails midway.
    pub body: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
}

impl fmt::Debug for BackupDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupDownload")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Takes a backup of all metadata, protected as `encryption` says; `None` while another
    /// backup is running on this replica.
    ///
    /// # Errors
    /// [`Error::Unavailable`](super::Error::Unavailable) when the read barrier cannot be
    /// passed; [`Error::Meta`](super::Error::Meta) when the copy cannot be made.
    pub async fn backup(&self, encryption: Encryption) -> Result<Option<BackupDownload>> {
        let Ok(running) = Arc::clone(&self.backups).try_acquire_owned() else {
            return Ok(None);
        };
        let prepared = self.meta.prepare_backup().await?;
        let header = prepared.header().clone();
        // The permit lives as long as the body: the next backup may start once it is sent.
        let body = prepared.into_stream(encryption).map(move |chunk| {
            let _running = &running;
            chunk
        });
        Ok(Some(BackupDownload {
            header,
            body: Box::pin(body),
        }))
    }
}
