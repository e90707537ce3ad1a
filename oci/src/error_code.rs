//! The error codes of the distribution spec's error table (code-1 … code-14), plus `UNKNOWN`
//! and `UNAVAILABLE` for 5xx answers as distribution sends them, each with its default HTTP
//! status and message. Only the vocabulary: turning an error into a response is the
//! registry's `ApiError`, which may override the status per endpoint.

/// A distribution-spec error code, the `code` of `{"errors":[{"code","message","detail"}]}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// code-1: blob unknown to registry.
    BlobUnknown,
    /// code-2: blob upload invalid.
    BlobUploadInvalid,
    /// code-3: blob upload unknown to registry.
    BlobUploadUnknown,
    /// code-4: provided digest did not match uploaded content.
    DigestInvalid,
    /// code-5: manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// code-6: manifest invalid.
    ManifestInvalid,
    /// code-7: manifest unknown to registry.
    ManifestUnknown,
    /// code-8: invalid repository name.
    NameInvalid,
    /// code-9: repository name not known to registry.
    NameUnknown,
    /// code-10: provided length did not match content length.
    SizeInvalid,
    /// code-11: authentication required.
    Unauthorized,
    /// code-12: requested access to the resource is denied.
    Denied,
    /// code-13: the operation is unsupported.
    Unsupported,
    /// code-14: too many requests.
    TooManyRequests,
    /// Not in the spec table: distribution's code for an unclassified (internal) error.
    Unknown,
    /// Not in the spec table: distribution's code for a service that cannot answer now (in
    /// Berth: no Raft leader).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in the spec table's order followed by the two 5xx codes.
    pub const ALL: [ErrorCode; 16] = [
        Self::BlobUnknown,
        Self::BlobUploadInvalid,
        Self::BlobUploadUnknown,
        Self::DigestInvalid,
        Self::ManifestBlobUnknown,
        Self::ManifestInvalid,
        Self::ManifestUnknown,
        Self::NameInvalid,
        Self::NameUnknown,
        Self::SizeInvalid,
        Self::Unauthorized,
        Self::Denied,
        Self::Unsupported,
        Self::TooManyRequests,
        Self::Unknown,
        Self::Unavailable,
    ];

    /// The code as it appears on the wire, e.g. `BLOB_UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unknown => "UNKNOWN",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    /// The default HTTP status for this code. Endpoints may override it where the spec says
    /// so (416 for an out-of-order chunk with `BLOB_UPLOAD_INVALID`, 405 when deletion is
    /// disabled).
    ///
    /// Two defaults differ from distribution's registration table:
    /// - `BLOB_UPLOAD_INVALID` is 400 (distribution registers 404): the request was bad, the
    ///   session still exists; a 404 reads as `BLOB_UPLOAD_UNKNOWN`.
    /// - `UNSUPPORTED` is 415 (distribution registers 405, and answers unknown manifest media
    ///   types with `MANIFEST_INVALID`/400). Berth raises `UNSUPPORTED` mostly for content it
    ///   will not store, such as Docker schema 1 manifests; 415 Unsupported Media Type says
    ///   that precisely (Quay answers the same, and distribution-spec issue #58 proposed it).
    ///   Refusing a method, such as DELETE with deletion disabled, overrides it to 405.
    pub const fn status(self) -> u16 {
        match self {
            Self::BlobUploadInvalid
            | Self::DigestInvalid
            | Self::ManifestBlobUnknown
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::SizeInvalid => 400,
            Self::Unauthorized => 401,
            Self::Denied => 403,
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => 404,
            Self::Unsupported => 415,
            Self::TooManyRequests => 429,
            Self::Unknown => 500,
            Self::Unavailable => 503,
        }
    }

    /// The message the spec's error table gives this code (distribution's for the two 5xx
    /// codes), for responses that have nothing more specific to say.
    pub const fn default_message(self) -> &'static str {
        match self {
            Self::BlobUnknown => "blob unknown to registry",
            Self::BlobUploadInvalid => "blob upload invalid",
            Self::BlobUploadUnknown => "blob upload unknown to registry",
            Self::DigestInvalid => "provided digest did not match uploaded content",
            Self::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            Self::ManifestInvalid => "manifest invalid",
            Self::ManifestUnknown => "manifest unknown to registry",
            Self::NameInvalid => "invalid repository name",
            Self::NameUnknown => "repository name not known to registry",
            Self::SizeInvalid => "provided length did not match content length",
            Self::Unauthorized => "authentication required",
            Self::Denied => "requested access to the resource is denied",
            Self::Unsupported => "the operation is unsupported",
            Self::TooManyRequests => "too many requests",
            Self::Unknown => "unknown error",
            Self::Unavailable => "service unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode::{self, *};

    #[test]
    fn every_code_has_its_string_status_and_message() {
        let table: [(ErrorCode, &str, u16, &str); 16] = [
            (BlobUnknown, "BLOB_UNKNOWN", 404, "blob unknown to registry"),
            (
                BlobUploadInvalid,
                "BLOB_UPLOAD_INVALID",
                400,
                "blob upload invalid",
            ),
            (
                BlobUploadUnknown,
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            (
                DigestInvalid,
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            (
                ManifestBlobUnknown,
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            (ManifestInvalid, "MANIFEST_INVALID", 400, "manifest invalid"),
            (
                ManifestUnknown,
                "MANIFEST_UNKNOWN",
                404,
                "manifest unknown to registry",
            ),
            (NameInvalid, "NAME_INVALID", 400, "invalid repository name"),
            (
                NameUnknown,
                "NAME_UNKNOWN",
                404,
                "repository name not known to registry",
            ),
            (
                SizeInvalid,
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            (Unauthorized, "UNAUTHORIZED", 401, "authentication required"),
            (
                Denied,
                "DENIED",
                403,
                "requested access to the resource is denied",
            ),
            (
                Unsupported,
                "UNSUPPORTED",
                415,
                "the operation is unsupported",
            ),
            (TooManyRequests, "TOOMANYREQUESTS", 429, "too many requests"),
            (Unknown, "UNKNOWN", 500, "unknown error"),
            (Unavailable, "UNAVAILABLE", 503, "service unavailable"),
        ];
        for (code, s, status, message) in table {
            assert_eq!(code.as_str(), s, "{code:?}");
            assert_eq!(code.status(), status, "{code:?}");
            assert_eq!(code.default_message(), message, "{code:?}");
        }
        assert_eq!(table.map(|row| row.0), ErrorCode::ALL);
    }

    #[test]
    fn wire_strings_are_unique() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn usable_in_const_context() {
        const NOT_FOUND: u16 = BlobUnknown.status();
        const CODE: &str = Unavailable.as_str();
        assert_eq!((NOT_FOUND, CODE), (404, "UNAVAILABLE"));
    }
}
