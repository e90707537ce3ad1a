//! `POST /api/v0/backup`: a backup file of all metadata, streamed (admin only, like every
//! route under `/api/v0`).
//!
//! The JSON body says how to protect the file: `{"passphrase": "…"}` (age with scrypt; at
//! least 12 characters) or, only when asked for explicitly, `{"unencrypted": true}`. The
//! passphrase travels in the body of a POST, never in the URL (which servers, proxies and
//! shell histories record) nor in a header of a GET (which a cache or a link could replay).
//!
//! Answers 200 with the file as `application/octet-stream` and headers describing it for
//! progress displays: `Berth-Backup-Cluster-Id`, `Berth-Backup-Index` (last log index
//! included), `Berth-Backup-Rows`, `Berth-Backup-Blobs` (referenced blob digests) and
//! `Berth-Backup-Plaintext-Bytes` (the encrypted file is slightly larger). 429 while another
//! backup runs on this replica, 503 without a quorum. A failure after the 200 cuts the body
//! off: the client sees an incomplete transfer, and such a file does not decrypt.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_raft::backup::{Encryption, Passphrase};
use serde::Deserialize;

use super::error::ApiError;
use crate::app::App;
use crate::service;

/// Body of `POST /api/v0/backup`. No `Debug`: it holds the passphrase.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    /// The passphrase to encrypt the file with.
    passphrase: Option<String>,
    /// Write the file without encryption (only when asked for explicitly).
    #[serde(default)]
    unencrypted: bool,
}

/// How the request asks the file to be protected.
fn encryption(body: &[u8]) -> Result<Encryption, service::Error> {
    let invalid = |why: String| service::Error::InvalidRequest(why);
    let request: BackupRequest = if body.is_empty() {
        BackupRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?
    };
    match (request.passphrase, request.unencrypted) {
        (Some(_), true) => Err(invalid(
            "give a passphrase or ask for an unencrypted backup, not both".to_owned(),
        )),
        (Some(passphrase), false) => Passphrase::for_writing(passphrase)
            .map(Encryption::Passphrase)
            .map_err(|e| invalid(e.to_string())),
        (None, true) => Ok(Encryption::None),
        (None, false) => Err(invalid(
            "a backup needs a passphrase ({\"passphrase\": \"...\"}); a backup without \
             encryption must be asked for explicitly ({\"unencrypted\": true})"
                .to_owned(),
        )),
    }
}

/// Streams a backup of all metadata.
pub(super) async fn post_backup(State(app): State<App>, body: Bytes) -> Response {
    let encryption = match encryption(&body) {
        Ok(e) => e,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let download = match app.registry().backup(encryption).await {
        Ok(Some(download)) => download,
        Ok(None) => {
            return ApiError::new(ErrorCode::TooManyRequests)
                .message("a backup is already running on this replica; retry when it ends")
                .header(RETRY_AFTER, "10")
                .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let h = &download.header;
    let stamp: String = h.created_at.chars().filter(char::is_ascii_digit).collect();
    let cluster: String = h.cluster_id.chars().take(8).collect();
    let described = [
        ("berth-backup-cluster-id", h.cluster_id.clone()),
        ("berth-backup-index", h.last_applied.index.to_string()),
        ("berth-backup-rows", h.rows().to_string()),
        ("berth-backup-blobs", h.blob_count.to_string()),
        (
            "berth-backup-plaintext-bytes",
            h.payload_bytes().to_string(),
        ),
    ];
    let mut res = Response::new(Body::from_stream(download.body));
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"berth-{cluster}-{stamp}.bkp\""
    )) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    for (name, value) in described {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    *res.status_mut() = StatusCode::OK;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_must_choose_protection_explicitly() {
        assert!(matches!(
            encryption(br#"{"passphrase":"twelve chars!"}"#),
            Ok(Encryption::Passphrase(_))
        ));
        assert!(matches!(
            encryption(br#"{"unencrypted":true}"#),
            Ok(Encryption::None)
        ));
        for bad in [
            &b""[..],
            b"{}",
            br#"{"unencrypted":false}"#,
            br#"{"passphrase":"short"}"#,
            br#"{"passphrase":"twelve chars!","unencrypted":true}"#,
            br#"{"password":"twelve chars!"}"#,
            b"not json",
        ] {
            assert!(
                matches!(encryption(bad), Err(service::Error::InvalidRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
