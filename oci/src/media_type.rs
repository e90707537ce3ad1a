//! Media types Berth recognises, and the small helpers that classify them. Constants only name
//! the types; deciding what a registry accepts is `manifest`'s job (and the registry's).

/// OCI image manifest (image-spec `manifest.md`).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (image-spec `image-index.md`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list ("fat manifest"), schema 2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest, unsigned. Deprecated and not accepted by Berth.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest, signed. Deprecated and not accepted by Berth.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The empty descriptor's type (`{}`), used as the config of artifacts (image-spec 1.1).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Docker foreign layer: content served from the descriptor's `urls`, not pushed as a blob.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Prefix of the (deprecated) OCI non-distributable layer types: `…v1.tar`, `…v1.tar+gzip`,
/// `…v1.tar+zstd`. Like Docker foreign layers, these need not be pushed.
pub const OCI_NONDISTRIBUTABLE_LAYER_PREFIX: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// What a manifest media type describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// One image or artifact: a config and layers ([`OCI_MANIFEST`], [`DOCKER_MANIFEST`]).
    Image,
    /// A list of manifests, typically one per platform ([`OCI_INDEX`], [`DOCKER_MANIFEST_LIST`]).
    Index,
}

/// The kind of manifest `media_type` names, or `None` for any type Berth does not store as a
/// manifest (including Docker schema 1). The comparison is exact: strip parameters first with
/// [`essence`].
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// The `type/subtype` of a `Content-Type` value, without parameters or surrounding spaces:
/// `essence("application/json; charset=utf-8") == "application/json"`.
pub fn essence(content_type: &str) -> &str {
    content_type
        .split_once(';')
        .map_or(content_type, |(essence, _)| essence)
        .trim()
}

/// Whether `media_type` is a layer that clients fetch from elsewhere (Docker foreign layers,
/// OCI non-distributable layers), so a manifest may reference it without the blob existing.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type == DOCKER_FOREIGN_LAYER || media_type.starts_with(OCI_NONDISTRIBUTABLE_LAYER_PREFIX)
}

/// Whether `media_type` is a bare `type/subtype` made of RFC 6838 §4.2 restricted names
/// (`[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}`), as image-spec requires of descriptor
/// `mediaType` and `artifactType`. Parameters are not allowed.
pub fn is_valid_media_type(media_type: &str) -> bool {
    fn restricted_name(s: &str) -> bool {
        let bytes = s.as_bytes();
        (1..=127).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes[1..].iter().all(|&c| {
                c.is_ascii_alphanumeric()
                    || matches!(
                        c,
                        b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                    )
            })
    }
    media_type
        .split_once('/')
        .is_some_and(|(ty, subtype)| restricted_name(ty) && restricted_name(subtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_kinds() {
        let cases = [
            (OCI_MANIFEST, Some(ManifestKind::Image)),
            (DOCKER_MANIFEST, Some(ManifestKind::Image)),
            (OCI_INDEX, Some(ManifestKind::Index)),
            (DOCKER_MANIFEST_LIST, Some(ManifestKind::Index)),
            (DOCKER_MANIFEST_V1, None),
            (DOCKER_MANIFEST_V1_SIGNED, None),
            (OCI_EMPTY, None),
            ("application/json", None),
            (
                "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
                None,
            ),
            ("", None),
        ];
        for (media_type, kind) in cases {
            assert_eq!(manifest_kind(media_type), kind, "{media_type:?}");
        }
    }

    #[test]
    fn essence_strips_parameters() {
        let cases = [
            ("application/json", "application/json"),
            ("application/json; charset=utf-8", "application/json"),
            ("  application/json ;charset=utf-8", "application/json"),
            ("", ""),
            (";x=y", ""),
        ];
        for (input, want) in cases {
            assert_eq!(essence(input), want, "{input:?}");
        }
    }

    #[test]
    fn non_distributable_layers() {
        let cases = [
            (DOCKER_FOREIGN_LAYER, true),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                true,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                true,
            ),
            ("application/vnd.oci.image.layer.v1.tar+gzip", false),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", false),
        ];
        for (media_type, want) in cases {
            assert_eq!(is_non_distributable(media_type), want, "{media_type:?}");
        }
    }

    #[test]
    fn media_type_syntax() {
        let long = format!("application/{}", "a".repeat(128));
        let cases = [
            (OCI_MANIFEST, true),
            ("application/vnd.cncf.helm.config.v1+json", true),
            ("text/plain", true),
            ("a/b", true),
            ("application/vnd.example!#$&^_.+-x", true),
            ("", false),
            ("application", false),
            ("application/", false),
            ("/json", false),
            ("application/json; charset=utf-8", false),
            ("application/json/x", false),
            ("application/.json", false),
            ("appli cation/json", false),
            (long.as_str(), false),
        ];
        for (media_type, want) in cases {
            assert_eq!(is_valid_media_type(media_type), want, "{media_type:?}");
        }
    }
}
