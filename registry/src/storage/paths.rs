//! The on-disk layout of blobs and uploads (see the module docs of `storage`).

use std::path::{Path, PathBuf};

use berth_oci::Digest;

use super::UploadId;

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
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// The directory holding every upload session.
    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `uploads/<id>/`.
    pub fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.uploads().join(id.to_string())
    }

    /// `uploads/<id>/data`.
    pub fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    /// `uploads/<id>/state.json`.
    pub fn upload_state(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join("state.json")
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
}
