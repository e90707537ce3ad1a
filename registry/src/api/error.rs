//! The one place where errors become HTTP: every service error and every malformed request
//! maps to the spec's error code, status and headers, in the spec's JSON body
//! `{"errors":[{"code","message","detail"}]}`. Bodies never carry internal text; the cause
//! of a 5xx rides in a response extension and is logged by the `log_errors` middleware.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::header::{
    HeaderName, HeaderValue, ALLOW, CONTENT_RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_oci::ErrorCode;
use berth_raft::MembershipError;
use serde_json::{json, Value};

use super::route::RouteError;
use crate::service;

/// The cause of an internal error, kept out of the body for the log.
#[derive(Clone, Debug)]
pub struct InternalCause(pub Arc<dyn std::error::Error + Send + Sync>);

/// An error response in the spec's format.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: StatusCode,
    message: Cow<'static, str>,
    detail: Option<Value>,
    /// Boxed: most errors carry no header, and a `HeaderMap` by value would make every
    /// `Result<_, ApiError>` large (clippy `result_large_err`).
    headers: Box<HeaderMap>,
    cause: Option<InternalCause>,
}

impl ApiError {
    /// An error with the code's own status and message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: Cow::Borrowed(code.default_message()),
            detail: None,
            headers: Box::default(),
            cause: None,
        }
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        let mut e = Self::new(ErrorCode::Unknown);
        e.cause = Some(InternalCause(Arc::new(cause)));
        e
    }

    /// Overrides the status where the spec asks for another than the code's usual one.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A more specific message.
    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Structured detail for the client.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, v);
        }
        self
    }

    /// The spec code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        self.status
    }

    /// A header the response will carry.
    pub fn header_value(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.get(name)
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        match e {
            E::NameUnknown(repo) => {
                ApiError::new(ErrorCode::NameUnknown).detail(json!({ "name": repo.as_str() }))
            }
            E::BlobUnknown(d) => {
                ApiError::new(ErrorCode::BlobUnknown).detail(json!({ "digest": d.to_string() }))
            }
            E::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
            E::ChunkOutOfOrder { offset, .. } => ApiError::new(ErrorCode::BlobUploadInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message("chunk does not continue the upload")
                .header(
                    HeaderName::from_static("range"),
                    super::response::range_value(offset),
                ),
            E::ChunkLengthMismatch => ApiError::new(ErrorCode::SizeInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message("Content-Range and Content-Length disagree"),
            E::DigestMismatch { expected } => ApiError::new(ErrorCode::DigestInvalid)
                .message("content does not match the digest")
                .detail(json!({ "digest": expected.to_string() })),
            E::ManifestUnknown(reference) => {
                ApiError::new(ErrorCode::ManifestUnknown).detail(json!({ "reference": reference }))
            }
            E::ManifestInvalid(why) => ApiError::new(ErrorCode::ManifestInvalid).message(why),
            E::ManifestUnsupported(media_type) => ApiError::new(ErrorCode::Unsupported)
                .message("manifest media type not supported")
                .detail(json!({ "mediaType": media_type })),
            E::ManifestTooLarge { limit } => ApiError::new(ErrorCode::ManifestInvalid)
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .message(format!("manifest larger than {limit} bytes")),
            E::ManifestBlobUnknown(missing) => ApiError::new(ErrorCode::ManifestBlobUnknown)
                .detail(json!({
                    "digests": missing.iter().map(ToString::to_string).collect::<Vec<_>>()
                })),
            E::RangeNotSatisfiable { size } => ApiError::new(ErrorCode::BlobUnknown)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message("range not satisfiable")
                .header(CONTENT_RANGE, format!("bytes */{size}")),
            E::Body(cause) => ApiError::new(ErrorCode::BlobUploadInvalid)
                .message("the request body ended early")
                .with_cause(cause),
            E::Unavailable => ApiError::new(ErrorCode::Unavailable).header(RETRY_AFTER, "1"),
            E::Unauthenticated => ApiError::new(ErrorCode::Unauthorized)
                .header(WWW_AUTHENTICATE, r#"Basic realm="berth""#),
            E::Denied => ApiError::new(ErrorCode::Denied),
            E::TooManyAttempts { retry_after_secs } => ApiError::new(ErrorCode::TooManyRequests)
                .message("too many failed logins")
                .header(RETRY_AFTER, retry_after_secs.to_string()),
            E::NotFound(what) => ApiError::new(ErrorCode::Unsupported)
                .status(StatusCode::NOT_FOUND)
                .message(format!("{what} not found")),
            E::Conflict(why) => ApiError::new(ErrorCode::Denied)
                .status(StatusCode::CONFLICT)
                .message(why),
            E::Membership(e) => membership_error(e),
            E::InvalidRequest(why) => ApiError::new(ErrorCode::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .message(why),
            E::Storage(cause) => ApiError::internal(cause),
            E::Meta(cause) => ApiError::internal(cause),
        }
    }
}

/// Membership refusals: the replica asked about is absent (404), the change would break the
/// cluster (409), the cluster cannot decide now (503), or the join token is bad (401).
fn membership_error(e: MembershipError) -> ApiError {
    use MembershipError as M;
    let message = e.to_string();
    match e {
        M::NotMember(id) => ApiError::new(ErrorCode::Unsupported)
            .status(StatusCode::NOT_FOUND)
            .message(message)
            .detail(json!({ "replica_id": id })),
        M::LastVoter(id) | M::Retired(id) => ApiError::new(ErrorCode::Denied)
            .status(StatusCode::CONFLICT)
            .message(message)
            .detail(json!({ "replica_id": id })),
        M::NoLeader | M::Busy | M::CatchUpTimeout(_) => ApiError::new(ErrorCode::Unavailable)
            .message(message)
            .header(RETRY_AFTER, "1"),
        M::InvalidJoinToken => ApiError::new(ErrorCode::Unauthorized).message(message),
        M::Failed(_) => ApiError::internal(e),
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => ApiError::new(ErrorCode::Unsupported)
                .status(StatusCode::NOT_FOUND)
                .message("no such endpoint"),
            RouteError::NameInvalid => ApiError::new(ErrorCode::NameInvalid),
            RouteError::DigestInvalid => ApiError::new(ErrorCode::DigestInvalid),
            RouteError::ReferenceInvalid => {
                ApiError::new(ErrorCode::ManifestInvalid).message("invalid tag")
            }
            RouteError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
        }
    }
}

/// A request the endpoint cannot take, found while reading its headers or query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The method is not one this endpoint serves; `allow` lists those it does.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// A required `digest` query parameter is absent or malformed.
    DigestParam,
    /// A `Content-Range` or `Content-Length` header is malformed.
    BadRange,
    /// A query parameter is malformed (`n`, `last`, `mount`, `from`).
    BadQuery(&'static str),
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::MethodNotAllowed { allow } => ApiError::new(ErrorCode::Unsupported)
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .message("method not allowed on this endpoint")
                .header(ALLOW, allow),
            RequestError::DigestParam => ApiError::new(ErrorCode::DigestInvalid)
                .message("a valid digest query parameter is required"),
            RequestError::BadRange => ApiError::new(ErrorCode::BlobUploadInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message("malformed Content-Range"),
            RequestError::BadQuery(param) => ApiError::new(ErrorCode::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .message(format!("malformed query parameter {param}")),
        }
    }
}

impl ApiError {
    fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(InternalCause(Arc::new(cause)));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{
            "code": self.code.as_str(),
            "message": self.message,
            "detail": self.detail.unwrap_or(Value::Null),
        }] });
        let mut res = (self.status, *self.headers, Json(body)).into_response();
        if let Some(cause) = self.cause {
            res.extensions_mut().insert(cause);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use berth_oci::{Digest, RepoName};

    use super::*;
    use crate::storage;

    /// Every service error variant: its code, status and the headers clients rely on.
    #[test]
    fn every_service_error_maps_to_its_code_and_status() {
        let d = Digest::sha256_of(b"x");
        let io = || std::io::Error::other("disk");
        let cases: Vec<(service::Error, ErrorCode, u16)> = vec![
            (
                service::Error::NameUnknown(RepoName::parse("a").unwrap()),
                ErrorCode::NameUnknown,
                404,
            ),
            (
                service::Error::BlobUnknown(d.clone()),
                ErrorCode::BlobUnknown,
                404,
            ),
            (
                service::Error::UploadUnknown,
                ErrorCode::BlobUploadUnknown,
                404,
            ),
            (
                service::Error::ChunkOutOfOrder {
                    start: 5,
                    offset: 3,
                },
                ErrorCode::BlobUploadInvalid,
                416,
            ),
            (
                service::Error::ChunkLengthMismatch,
                ErrorCode::SizeInvalid,
                416,
            ),
            (
                service::Error::DigestMismatch {
                    expected: d.clone(),
                },
                ErrorCode::DigestInvalid,
                400,
            ),
            (
                service::Error::ManifestUnknown("v1".into()),
                ErrorCode::ManifestUnknown,
                404,
            ),
            (
                service::Error::ManifestInvalid("x".into()),
                ErrorCode::ManifestInvalid,
                400,
            ),
            (
                service::Error::ManifestUnsupported("x".into()),
                ErrorCode::Unsupported,
                415,
            ),
            (
                service::Error::ManifestTooLarge { limit: 1 },
                ErrorCode::ManifestInvalid,
                413,
            ),
            (
                service::Error::ManifestBlobUnknown(vec![d.clone()]),
                ErrorCode::ManifestBlobUnknown,
                400,
            ),
            (
                service::Error::RangeNotSatisfiable { size: 3 },
                ErrorCode::BlobUnknown,
                416,
            ),
            (
                service::Error::Body(io()),
                ErrorCode::BlobUploadInvalid,
                400,
            ),
            (service::Error::Unavailable, ErrorCode::Unavailable, 503),
            (
                service::Error::Unauthenticated,
                ErrorCode::Unauthorized,
                401,
            ),
            (service::Error::Denied, ErrorCode::Denied, 403),
            (
                service::Error::TooManyAttempts {
                    retry_after_secs: 2,
                },
                ErrorCode::TooManyRequests,
                429,
            ),
            (
                service::Error::NotFound("user x".into()),
                ErrorCode::Unsupported,
                404,
            ),
            (
                service::Error::Conflict("taken".into()),
                ErrorCode::Denied,
                409,
            ),
            (
                service::Error::InvalidRequest("x".into()),
                ErrorCode::Unsupported,
                400,
            ),
            (
                service::Error::Membership(MembershipError::NotMember(4)),
                ErrorCode::Unsupported,
                404,
            ),
            (
                service::Error::Membership(MembershipError::LastVoter(1)),
                ErrorCode::Denied,
                409,
            ),
            (
                service::Error::Membership(MembershipError::NoLeader),
                ErrorCode::Unavailable,
                503,
            ),
            (
                service::Error::Membership(MembershipError::Busy),
                ErrorCode::Unavailable,
                503,
            ),
            (
                service::Error::Membership(MembershipError::CatchUpTimeout(1)),
                ErrorCode::Unavailable,
                503,
            ),
            (
                service::Error::Membership(MembershipError::InvalidJoinToken),
                ErrorCode::Unauthorized,
                401,
            ),
            (
                service::Error::Membership(MembershipError::Failed("x".into())),
                ErrorCode::Unknown,
                500,
            ),
            (
                service::Error::Storage(storage::Error::Io(io())),
                ErrorCode::Unknown,
                500,
            ),
            (
                service::Error::Meta(berth_raft::MetaError::Raft("x".to_owned())),
                ErrorCode::Unknown,
                500,
            ),
        ];
        for (err, code, status) in cases {
            let label = format!("{err:?}");
            let api = ApiError::from(err);
            assert_eq!(api.code(), code, "{label}");
            assert_eq!(api.http_status().as_u16(), status, "{label}");
        }
    }

    #[test]
    fn out_of_order_chunks_say_where_the_upload_stands() {
        let api = ApiError::from(service::Error::ChunkOutOfOrder {
            start: 9,
            offset: 4,
        });
        assert_eq!(
            api.header_value(&HeaderName::from_static("range")).unwrap(),
            "0-3"
        );
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let api = ApiError::from(RequestError::MethodNotAllowed { allow: "GET, HEAD" });
        assert_eq!(api.http_status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(api.header_value(&ALLOW).unwrap(), "GET, HEAD");
    }

    #[test]
    fn unauthenticated_admin_requests_are_challenged_for_basic_auth() {
        let api = ApiError::from(service::Error::Unauthenticated);
        assert_eq!(
            api.header_value(&WWW_AUTHENTICATE).unwrap(),
            r#"Basic realm="berth""#
        );
    }

    #[test]
    fn unavailable_asks_to_retry() {
        let api = ApiError::from(service::Error::Unavailable);
        assert_eq!(api.header_value(&RETRY_AFTER).unwrap(), "1");
    }

    #[test]
    fn unsatisfiable_ranges_carry_the_size() {
        let api = ApiError::from(service::Error::RangeNotSatisfiable { size: 42 });
        assert_eq!(api.header_value(&CONTENT_RANGE).unwrap(), "bytes */42");
    }

    #[tokio::test]
    async fn internal_errors_never_show_their_cause() {
        let res = ApiError::internal(std::io::Error::other("secret path /var/x")).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.extensions().get::<InternalCause>().is_some());
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}
