//! The layout of blobs and uploads (see the module docs of `storage`), as file paths under a
//! directory ([`Layout`]) and as object keys under a bucket prefix ([`Keys`]). Both are built
//! only from parsed values (`Digest`, `UploadId`, random ids), never from request text.

use std::path::{Path, PathBuf};

use berth_oci::Digest;
use object_store::path::Path as Key;
use uuid::Uuid;

use super::UploadId;

/// `blobs/<alg>/<ab>/<hex>`, relative to the storage root.
fn blob_rel(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2])
}

/// Maps typed values to paths under one storage root.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/<alg>/<ab>/<hex>`.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_rel(digest))
    }

    /// The directory holding every blob.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The directory holding every upload session.
    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `uploads/<id>/`: where sessions of earlier versions kept their files.
    pub fn legacy_upload_dir(&self, id: &UploadId) -> PathBuf {
        self.uploads().join(id.to_string())
    }

    /// `uploads/<id>.data`. Sessions are two files side by side rather than a directory of
    /// their own: on ext4 creating and removing a directory per push cost more than the rest
    /// of a small blob's upload.
    pub fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.uploads().join(format!("{id}.data"))
    }

    /// `uploads/<id>.json`.
    pub fn upload_state(&self, id: &UploadId) -> PathBuf {
        self.uploads().join(format!("{id}.json"))
    }

    /// `uploads/spare/`: state files of ended sessions, kept for new sessions to reuse.
    pub fn spare_states(&self) -> PathBuf {
        self.uploads().join("spare")
    }
}

/// Maps typed values to object keys under an optional prefix of a bucket.
#[derive(Clone, Debug)]
pub struct Keys {
    /// Validated prefix without leading or trailing `/`; empty for the bucket's root.
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (a validated object path; `None` or empty for the root).
    pub fn new(prefix: Option<&Key>) -> Self {
        Self {
            prefix: prefix.map(|p| p.as_ref().to_owned()).unwrap_or_default(),
        }
    }

    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The prefix, as a URL path (for messages).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `blobs/<alg>/<ab>/<hex>`.
    pub fn blob(&self, digest: &Digest) -> Key {
        self.key(&blob_rel(digest))
    }

    /// The prefix of every blob.
    pub fn blobs(&self) -> Key {
        self.key("blobs")
    }

    /// `uploads/`: every upload.
    pub fn uploads(&self) -> Key {
        self.key("uploads")
    }

    /// `uploads/<id>/`: every object of one upload.
    pub fn upload_dir(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}"))
    }

    /// `uploads/<id>/state.json`: the session's state.
    pub fn upload_state(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}/state.json"))
    }

    /// `uploads/<id>/data`: the multipart upload of a chunked session, completed there
    /// before the verified bytes are copied to their blob key.
    pub fn upload_data(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}/data"))
    }

    /// `uploads/<id>/tail-<tail>`: bytes staged until a part is large enough. A new name for
    /// every write, so a state never names an object that another write changed.
    pub fn upload_tail(&self, id: &UploadId, tail: &Uuid) -> Key {
        self.key(&format!("uploads/{id}/tail-{}", tail.as_hyphenated()))
    }

    /// `uploads/<id>/whole.json`: a monolithic upload streaming straight to its blob key
    /// (recorded so that garbage collection can abort it if it is abandoned).
    pub fn whole_state(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}/whole.json"))
    }

    /// `probe-<id>`: the object written, read and deleted by the start-up check.
    pub fn probe(&self, id: &Uuid) -> Key {
        self.key(&format!("probe-{}", id.as_hyphenated()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_path_is_split_by_first_two_hex_digits() {
        let digest = Digest::sha256_of(b"abc");
        let layout = Layout::new("/r");
        let hex = digest.hex().to_owned();
        assert_eq!(
            layout.blob(&digest),
            PathBuf::from(format!("/r/blobs/sha256/{}/{hex}", &hex[..2]))
        );
    }

    #[test]
    fn object_keys_sit_under_the_prefix() {
        let digest = Digest::sha256_of(b"abc");
        let hex = digest.hex().to_owned();
        let prefix = Key::parse("team/registry").unwrap();
        let keys = Keys::new(Some(&prefix));
        assert_eq!(
            keys.blob(&digest).as_ref(),
            format!("team/registry/blobs/sha256/{}/{hex}", &hex[..2])
        );
        let root = Keys::new(None);
        assert_eq!(
            root.blob(&digest).as_ref(),
            format!("blobs/sha256/{}/{hex}", &hex[..2])
        );
        let id: UploadId = "0a3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b".parse().unwrap();
        assert_eq!(
            root.upload_state(&id).as_ref(),
            "uploads/0a3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b/state.json"
        );
    }
}
