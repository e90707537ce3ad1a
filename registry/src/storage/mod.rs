//! Blob storage: content-addressed blobs and resumable upload sessions in a directory
//! (local disk or an NFS mount shared by every replica).
//!
//! Layout under the storage root (one place, like distribution's `paths.go`):
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>     a verified blob, never partial
//! uploads/<uuid>/data                         bytes received so far
//! uploads/<uuid>/state.json                   repository, offset, started, running hash state
//! ```
//!
//! Every path is built from parsed values (`Digest`, `UploadId`), never from request text,
//! so no request can name a path outside the root. This module knows nothing of HTTP or
//! of repositories' visibility rules: the service layer checks links in the metadata first.

mod blob;
mod error;
mod paths;
mod upload;

pub use blob::{BlobReader, BlobStore};
pub use error::Error;
pub use paths::Layout;
pub(crate) use upload::prepare;
pub use upload::{InvalidUploadId, UploadId, UploadState, UploadStore};

#[cfg(test)]
mod tests;
