//! End-to-end tests of the OCI Distribution v1.1 API against a real `berth` process: every
//! endpoint (end-1 … end-14) and every error code a single replica can produce, checked over
//! HTTP with the status, headers and JSON error body the spec asks for.

mod support;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, LINK, RANGE};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use support::oci::{
    descriptor, image_manifest, push_blob, push_image, put_manifest, sha256, varied_bytes,
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER,
    OCI_MANIFEST,
};
use support::{client, Berth};

const DIGEST_HEADER: &str = "docker-content-digest";
const UUID_HEADER: &str = "docker-upload-uuid";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// The default manifest size limit (the spec's advice).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Bound on pages followed through `Link` headers, so a server that always links loops no more.
const MAX_PAGES: usize = 50;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn start() -> (Berth, Client) {
    (Berth::start(), client())
}

/// A header's value as text; panics naming the header when it is absent.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name} in {headers:?}"))
        .to_str()
        .expect("header is ASCII")
}

fn assert_api_version(headers: &HeaderMap) {
    assert_eq!(
        headers
            .get("docker-distribution-api-version")
            .map(|v| v.as_bytes()),
        Some(&b"registry/2.0"[..]),
        "Docker-Distribution-API-Version missing or wrong in {headers:?}"
    );
}

/// Asserts an error response: the status, the API version header, a JSON content type and
/// the spec's body `{"errors":[{"code":..., "message":..., "detail"?:...}]}` with `code`.
/// Returns the body for further checks.
async fn expect_error(res: Response, status: StatusCode, code: &str) -> Value {
    let got = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("error body");
    assert_eq!(got, status, "wrong status; body: {text}");
    assert_api_version(&headers);
    assert!(
        header(&headers, "content-type").starts_with("application/json"),
        "error content type: {headers:?}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {text}"));
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        ["errors"],
        "error body has other keys: {text}"
    );
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors is not an array: {text}"));
    assert_eq!(errors.len(), 1, "one error expected: {text}");
    let error = errors[0]
        .as_object()
        .unwrap_or_else(|| panic!("errors[0] is not an object: {text}"));
    assert_eq!(
        error.get("code").and_then(Value::as_str),
        Some(code),
        "error code: {text}"
    );
    let message = error.get("message").and_then(Value::as_str);
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "errors[0].message must be a non-empty string: {text}"
    );
    for key in error.keys() {
        assert!(
            ["code", "message", "detail"].contains(&key.as_str()),
            "unexpected key {key}: {text}"
        );
    }
    body
}

/// A HEAD error: the status and the API version header, and no body.
async fn expect_head_error(res: Response, status: StatusCode) {
    assert_eq!(res.status(), status);
    assert_api_version(res.headers());
    assert!(
        res.bytes().await.unwrap().is_empty(),
        "HEAD response has a body"
    );
}

async fn send(c: &Client, method: Method, url: &str) -> Response {
    c.request(method, url).send().await.unwrap()
}

async fn get(c: &Client, url: &str) -> Response {
    send(c, Method::GET, url).await
}

async fn head(c: &Client, url: &str) -> Response {
    send(c, Method::HEAD, url).await
}

async fn delete(c: &Client, url: &str) -> Response {
    send(c, Method::DELETE, url).await
}

/// An absolute URL for a `Location` or `Link` target (absolute, or an absolute path).
fn absolute(b: &Berth, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        target.to_owned()
    } else {
        assert!(target.starts_with('/'), "relative target {target}");
        b.at(target)
    }
}

/// The path of a `Location` (which may be absolute or a path).
fn location_path<'a>(b: &Berth, location: &'a str) -> &'a str {
    location.strip_prefix(b.url.as_str()).unwrap_or(location)
}

/// Adds a query parameter to a URL that may already have a query (spec: use the Location
/// as given).
fn with_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// Checks an upload session response's `Location` and `Docker-Upload-UUID`; returns the
/// session's absolute URL.
fn session_url(b: &Berth, repo: &str, headers: &HeaderMap) -> String {
    assert_api_version(headers);
    let location = header(headers, "location");
    let uuid = header(headers, UUID_HEADER);
    assert!(!uuid.is_empty());
    let path = location_path(b, location);
    let expected_prefix = format!("/v2/{repo}/blobs/uploads/");
    assert!(
        path.starts_with(&expected_prefix),
        "upload Location {location} not under {expected_prefix}"
    );
    assert!(
        path.contains(uuid),
        "upload Location {location} does not name session {uuid}"
    );
    absolute(b, location)
}

/// end-4a: opens an upload session (202); returns its absolute URL.
async fn open_upload(c: &Client, b: &Berth, repo: &str) -> String {
    let res = c
        .post(b.at(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "{}",
        res.text().await.unwrap()
    );
    session_url(b, repo, res.headers())
}

/// end-5: PATCH a chunk, with `Content-Range` when `start` is given (Content-Length is set
/// by the client from the body).
async fn patch(c: &Client, url: &str, chunk: &[u8], start: Option<u64>) -> Response {
    let mut req = c
        .patch(url)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(chunk.to_vec());
    if let Some(start) = start {
        req = req.header(
            CONTENT_RANGE,
            format!("{start}-{}", start + chunk.len() as u64 - 1),
        );
    }
    req.send().await.unwrap()
}

/// Asserts a 202 of an accepted chunk with `Range: 0-<offset-1>`; returns the session URL
/// to use next.
fn accepted_chunk(b: &Berth, repo: &str, res: &Response, offset: u64) -> String {
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(header(res.headers(), "range"), format!("0-{}", offset - 1));
    assert_eq!(header(res.headers(), "content-length"), "0");
    session_url(b, repo, res.headers())
}

/// end-13: GET the session's status: 204 with `Range`, `Location`, `Docker-Upload-UUID`.
async fn upload_status(c: &Client, b: &Berth, repo: &str, url: &str) -> String {
    let res = get(c, url).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let range = header(res.headers(), "range").to_owned();
    session_url(b, repo, res.headers());
    assert!(res.bytes().await.unwrap().is_empty());
    range
}

/// Asserts a 201 for a stored blob: `Location` serving the blob and `Docker-Content-Digest`.
fn blob_created(b: &Berth, repo: &str, res: &Response, digest: &str) -> String {
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_api_version(res.headers());
    assert_eq!(header(res.headers(), DIGEST_HEADER), digest);
    let location = header(res.headers(), "location");
    assert_eq!(
        location_path(b, location),
        format!("/v2/{repo}/blobs/{digest}")
    );
    absolute(b, location)
}

/// end-2: GET and HEAD of a blob return exactly `bytes` with its length and digest.
async fn assert_blob(c: &Client, b: &Berth, repo: &str, bytes: &[u8]) {
    let digest = sha256(bytes);
    let url = b.at(&format!("/v2/{repo}/blobs/{digest}"));
    let res = head(c, &url).await;
    assert_eq!(res.status(), StatusCode::OK, "HEAD {url}");
    assert_api_version(res.headers());
    assert_eq!(
        header(res.headers(), "content-length"),
        bytes.len().to_string()
    );
    assert_eq!(header(res.headers(), DIGEST_HEADER), digest);
    assert!(res.bytes().await.unwrap().is_empty());
    let res = get(c, &url).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    assert_api_version(res.headers());
    assert_eq!(
        header(res.headers(), "content-length"),
        bytes.len().to_string()
    );
    assert_eq!(header(res.headers(), DIGEST_HEADER), digest);
    let body = res.bytes().await.unwrap();
    assert!(
        body[..] == bytes[..],
        "blob bytes differ ({} vs {} bytes)",
        body.len(),
        bytes.len()
    );
}

async fn assert_blob_absent(c: &Client, b: &Berth, repo: &str, digest: &str) {
    let url = b.at(&format!("/v2/{repo}/blobs/{digest}"));
    expect_head_error(head(c, &url).await, StatusCode::NOT_FOUND).await;
    expect_error(get(c, &url).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

/// end-3: GET and HEAD of a manifest return the stored media type, the exact bytes, the
/// digest and the length.
async fn assert_manifest(
    c: &Client,
    b: &Berth,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let url = b.at(&format!("/v2/{repo}/manifests/{reference}"));
    let res = get(c, &url).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    assert_api_version(res.headers());
    assert_eq!(header(res.headers(), "content-type"), media_type);
    assert_eq!(header(res.headers(), DIGEST_HEADER), sha256(body));
    assert_eq!(
        header(res.headers(), "content-length"),
        body.len().to_string()
    );
    assert_eq!(
        res.bytes().await.unwrap(),
        Bytes::copy_from_slice(body),
        "manifest bytes of {reference}"
    );
    let res = head(c, &url).await;
    assert_eq!(res.status(), StatusCode::OK, "HEAD {url}");
    assert_api_version(res.headers());
    assert_eq!(header(res.headers(), "content-type"), media_type);
    assert_eq!(header(res.headers(), DIGEST_HEADER), sha256(body));
    assert_eq!(
        header(res.headers(), "content-length"),
        body.len().to_string()
    );
    assert!(res.bytes().await.unwrap().is_empty(), "HEAD has a body");
}

async fn assert_manifest_unknown(c: &Client, b: &Berth, repo: &str, reference: &str) {
    let url = b.at(&format!("/v2/{repo}/manifests/{reference}"));
    expect_error(
        get(c, &url).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    expect_head_error(head(c, &url).await, StatusCode::NOT_FOUND).await;
}

/// Asserts a 201 for a stored manifest with its `Location` and `Docker-Content-Digest`.
async fn manifest_created(b: &Berth, repo: &str, res: Response, body: &[u8]) {
    let status = res.status();
    let headers = res.headers().clone();
    assert_eq!(status, StatusCode::CREATED, "{}", res.text().await.unwrap());
    assert_api_version(&headers);
    let digest = sha256(body);
    assert_eq!(header(&headers, DIGEST_HEADER), digest);
    assert_eq!(
        location_path(b, header(&headers, "location")),
        format!("/v2/{repo}/manifests/{digest}")
    );
}

/// Pushes a manifest by tag or digest and asserts the 201.
async fn push_manifest(
    c: &Client,
    b: &Berth,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let res = put_manifest(c, &b.url, repo, reference, media_type, body).await;
    manifest_created(b, repo, res, body).await;
}

/// A pretty-printed OCI image manifest (so the exact bytes differ from any re-serialisation)
/// over config and layer blobs pushed to `repo`; returns its bytes.
async fn pushed_image_manifest(c: &Client, b: &Berth, repo: &str, seed: u64) -> Vec<u8> {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = varied_bytes(seed, 1000 + seed as usize);
    push_blob(c, &b.url, repo, &config).await;
    push_blob(c, &b.url, repo, &layer).await;
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
        "annotations": { "org.opencontainers.image.title": format!("image {seed}") },
    }))
    .unwrap()
}

/// A Docker schema 2 manifest over blobs pushed to `repo`.
async fn pushed_docker_manifest(c: &Client, b: &Berth, repo: &str, seed: u64) -> Vec<u8> {
    let config =
        format!("{{\"architecture\":\"arm64\",\"os\":\"linux\",\"docker\":{seed}}}").into_bytes();
    let layer = varied_bytes(seed + 100, 700);
    push_blob(c, &b.url, repo, &config).await;
    push_blob(c, &b.url, repo, &layer).await;
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap()
}

fn platform_entry(media_type: &str, body: &[u8], arch: &str) -> Value {
    let mut d = descriptor(media_type, body);
    d["platform"] = json!({ "architecture": arch, "os": "linux" });
    d
}

/// The whole life of one manifest kind: PUT by tag (201), GET/HEAD by tag and digest, PUT
/// again by digest (201), a second tag, DELETE of a tag, DELETE by digest.
async fn manifest_round_trip(c: &Client, b: &Berth, repo: &str, media_type: &str, body: &[u8]) {
    let digest = sha256(body);
    push_manifest(c, b, repo, "v1", media_type, body).await;
    assert_manifest(c, b, repo, "v1", media_type, body).await;
    assert_manifest(c, b, repo, &digest, media_type, body).await;
    push_manifest(c, b, repo, &digest, media_type, body).await;
    push_manifest(c, b, repo, "v2", media_type, body).await;
    assert_manifest(c, b, repo, "v2", media_type, body).await;

    let res = delete(c, &b.at(&format!("/v2/{repo}/manifests/v1"))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_api_version(res.headers());
    assert_manifest_unknown(c, b, repo, "v1").await;
    assert_manifest(c, b, repo, "v2", media_type, body).await;
    assert_manifest(c, b, repo, &digest, media_type, body).await;

    let res = delete(c, &b.at(&format!("/v2/{repo}/manifests/{digest}"))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_manifest_unknown(c, b, repo, &digest).await;
    assert_manifest_unknown(c, b, repo, "v2").await;
}

/// Follows `Link: <...>; rel="next"` from `first` until it is absent (bounded); returns
/// the entries under `key` of every page.
async fn pages(c: &Client, b: &Berth, first: &str, key: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut next = Some(b.at(first));
    while let Some(url) = next.take() {
        assert!(
            out.len() < MAX_PAGES,
            "more than {MAX_PAGES} pages from {first}"
        );
        let res = get(c, &url).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {url}");
        assert_api_version(res.headers());
        assert!(header(res.headers(), "content-type").starts_with("application/json"));
        next = res.headers().get(LINK).map(|v| {
            let v = v.to_str().unwrap();
            let (target, rel) = v
                .split_once(';')
                .unwrap_or_else(|| panic!("Link without rel: {v}"));
            assert_eq!(rel.trim(), "rel=\"next\"", "Link {v}");
            let target = target
                .trim()
                .strip_prefix('<')
                .and_then(|t| t.strip_suffix('>'))
                .unwrap_or_else(|| panic!("Link target not in <>: {v}"));
            absolute(b, target)
        });
        let body: Value = res.json().await.unwrap();
        let entries = body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is not an array: {body}"))
            .iter()
            .map(|e| e.as_str().expect("string entry").to_owned())
            .collect();
        out.push(entries);
    }
    out
}

async fn tags(c: &Client, b: &Berth, repo: &str) -> Vec<String> {
    let res = get(c, &b.at(&format!("/v2/{repo}/tags/list"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(LINK).is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], repo);
    serde_json::from_value(body["tags"].clone()).unwrap()
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// An OCI artifact manifest (image manifest with an empty config) naming `subject`.
fn artifact(
    artifact_type: Option<&str>,
    config: Value,
    subject: Value,
    annotations: Option<Value>,
) -> Vec<u8> {
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [descriptor(OCI_EMPTY, b"{}")],
        "subject": subject,
    });
    if let Some(t) = artifact_type {
        doc["artifactType"] = json!(t);
    }
    if let Some(a) = annotations {
        doc["annotations"] = a;
    }
    serde_json::to_vec(&doc).unwrap()
}

/// end-12a/b: the referrers of `subject`, optionally filtered (the query is encoded as
/// clients do: a `+` in a media type must not arrive as a space).
async fn referrers(
    c: &Client,
    b: &Berth,
    repo: &str,
    subject: &str,
    artifact_type: Option<&str>,
) -> (HeaderMap, Vec<Value>) {
    let mut req = c.get(b.at(&format!("/v2/{repo}/referrers/{subject}")));
    if let Some(t) = artifact_type {
        req = req.query(&[("artifactType", t)]);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_api_version(res.headers());
    assert_eq!(header(res.headers(), "content-type"), OCI_INDEX);
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2, "{body}");
    assert_eq!(body["mediaType"], OCI_INDEX, "{body}");
    let manifests = body["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests: {body}"))
        .clone();
    (headers, manifests)
}

// ---------------------------------------------------------------------------------------
// end-1: the base endpoint, and the version header on every response
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn base_endpoint_is_200_with_api_version_end_1() {
    let (b, c) = start();
    for path in ["/v2/", "/v2"] {
        let res = get(&c, &b.at(path)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_api_version(res.headers());
    }
    let res = head(&c, &b.at("/v2/")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_api_version(res.headers());
}

#[tokio::test]
async fn every_response_carries_the_api_version_header_errors_included() {
    let (b, c) = start();
    let digest = push_image(&c, &b.url, "ver/app", "v1", "ver").await;
    let ok = [
        "/v2/ver/app/manifests/v1".to_owned(),
        format!("/v2/ver/app/manifests/{digest}"),
        "/v2/ver/app/tags/list".to_owned(),
        "/v2/_catalog".to_owned(),
        format!("/v2/ver/app/referrers/{digest}"),
    ];
    for path in &ok {
        let res = get(&c, &b.at(path)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_api_version(res.headers());
    }
    // Errors of every origin: routing, the service, the method, HEAD without a body.
    expect_error(
        get(&c, &b.at("/v2/Bad/tags/list")).await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
    expect_error(
        get(&c, &b.at("/v2/none/tags/list")).await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    let res = send(&c, Method::POST, &b.at("/v2/ver/app/manifests/v1")).await;
    expect_error(res, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    expect_head_error(
        head(&c, &b.at("/v2/ver/app/manifests/nope")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(
        get(&c, &b.at("/v2/ver")).await,
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// end-2, end-10: blobs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn blob_head_and_get_return_length_and_digest_end_2() {
    let (b, c) = start();
    let bytes = varied_bytes(1, 300_000);
    push_blob(&c, &b.url, "blobs/app", &bytes).await;
    assert_blob(&c, &b, "blobs/app", &bytes).await;
}

#[tokio::test]
async fn blob_range_get_is_206_with_content_range_end_2() {
    let (b, c) = start();
    let bytes = varied_bytes(2, 1000);
    let digest = push_blob(&c, &b.url, "ranges", &bytes).await;
    let url = b.at(&format!("/v2/ranges/blobs/{digest}"));
    // (Range, first byte, last byte)
    let cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-7", 993, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=995-5000", 995, 999),
    ];
    for (range, first, last) in cases {
        let res = c.get(&url).header(RANGE, range).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_api_version(res.headers());
        assert_eq!(
            header(res.headers(), "content-range"),
            format!("bytes {first}-{last}/1000"),
            "{range}"
        );
        assert_eq!(
            header(res.headers(), "content-length"),
            (last - first + 1).to_string(),
            "{range}"
        );
        assert_eq!(header(res.headers(), DIGEST_HEADER), digest);
        let body = res.bytes().await.unwrap();
        assert_eq!(&body[..], &bytes[first..=last], "{range}");
    }
}

#[tokio::test]
async fn blob_unsatisfiable_range_is_416_with_size_end_2() {
    let (b, c) = start();
    let bytes = varied_bytes(3, 100);
    let digest = push_blob(&c, &b.url, "ranges", &bytes).await;
    let url = b.at(&format!("/v2/ranges/blobs/{digest}"));
    for range in ["bytes=100-", "bytes=100-200", "bytes=5000-5001", "bytes=-0"] {
        let res = c.get(&url).header(RANGE, range).send().await.unwrap();
        assert_eq!(
            header(res.headers(), "content-range"),
            "bytes */100",
            "{range}"
        );
        let body = expect_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN").await;
        assert!(!body.to_string().contains("/storage"), "{body}");
    }
    // The blob itself is intact.
    assert_blob(&c, &b, "ranges", &bytes).await;
}

#[tokio::test]
async fn blob_delete_is_202_then_blob_unknown_end_10() {
    let (b, c) = start();
    let bytes = varied_bytes(4, 500);
    let digest = push_blob(&c, &b.url, "del/blob", &bytes).await;
    let url = b.at(&format!("/v2/del/blob/blobs/{digest}"));
    let res = delete(&c, &url).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_api_version(res.headers());
    assert_blob_absent(&c, &b, "del/blob", &digest).await;
    expect_error(
        delete(&c, &url).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    // Pushing it again brings it back.
    push_blob(&c, &b.url, "del/blob", &bytes).await;
    assert_blob(&c, &b, "del/blob", &bytes).await;
}

#[tokio::test]
async fn blob_of_one_repository_is_blob_unknown_in_another_end_2() {
    let (b, c) = start();
    let secret = varied_bytes(5, 256);
    let digest = push_blob(&c, &b.url, "team/a", &secret).await;
    // Unknown repository, then an existing repository without the link.
    assert_blob_absent(&c, &b, "team/b", &digest).await;
    push_image(&c, &b.url, "team/b", "v1", "b").await;
    assert_blob_absent(&c, &b, "team/b", &digest).await;
    let res = delete(&c, &b.at(&format!("/v2/team/b/blobs/{digest}"))).await;
    expect_error(res, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // A manifest in B may not reference it either.
    let config = b"{}".to_vec();
    push_blob(&c, &b.url, "team/b", &config).await;
    let manifest = image_manifest(&config, &[&secret]);
    let res = put_manifest(&c, &b.url, "team/b", "steal", OCI_MANIFEST, &manifest).await;
    expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // A still has it.
    assert_blob(&c, &b, "team/a", &secret).await;
}

#[tokio::test]
async fn blob_unknown_digest_is_blob_unknown_and_malformed_digest_is_digest_invalid_end_2() {
    let (b, c) = start();
    push_image(&c, &b.url, "digests", "v1", "d").await;
    let unknown = sha256(b"never pushed");
    assert_blob_absent(&c, &b, "digests", &unknown).await;
    for bad in [
        "sha256:abc",
        "sha256:ZZ",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
    ] {
        let url = b.at(&format!("/v2/digests/blobs/{bad}"));
        expect_error(
            get(&c, &url).await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        )
        .await;
        expect_head_error(head(&c, &url).await, StatusCode::BAD_REQUEST).await;
    }
}

// ---------------------------------------------------------------------------------------
// end-4a/b, end-5, end-6, end-13, end-14: uploads
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn monolithic_post_with_digest_is_201_end_4b() {
    let (b, c) = start();
    let bytes = varied_bytes(6, 70_000);
    let digest = sha256(&bytes);
    let res = c
        .post(b.at(&format!("/v2/mono/blobs/uploads/?digest={digest}")))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let location = blob_created(&b, "mono", &res, &digest);
    let served = get(&c, &location).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap(), bytes);
    assert_blob(&c, &b, "mono", &bytes).await;
}

#[tokio::test]
async fn monolithic_post_with_wrong_or_malformed_digest_is_digest_invalid_end_4b() {
    let (b, c) = start();
    let bytes = varied_bytes(7, 1000);
    let claimed = sha256(b"something else");
    let res = c
        .post(b.at(&format!("/v2/mono/blobs/uploads/?digest={claimed}")))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_blob_absent(&c, &b, "mono", &claimed).await;
    assert_blob_absent(&c, &b, "mono", &sha256(&bytes)).await;
    let res = c
        .post(b.at("/v2/mono/blobs/uploads/?digest=sha256:nothex"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn post_then_put_with_whole_body_is_201_end_4a_end_6() {
    let (b, c) = start();
    let bytes = varied_bytes(8, 123_457);
    let digest = sha256(&bytes);
    let url = open_upload(&c, &b, "two/step").await;
    assert_eq!(upload_status(&c, &b, "two/step", &url).await, "0-0");
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    blob_created(&b, "two/step", &res, &digest);
    assert_blob(&c, &b, "two/step", &bytes).await;
    // The session is closed.
    expect_error(
        get(&c, &url).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn chunked_upload_with_status_and_last_chunk_on_put_end_5_end_13_end_6() {
    let (b, c) = start();
    let repo = "chunked/app";
    let bytes = varied_bytes(9, 25_000);
    let digest = sha256(&bytes);
    let (one, rest) = bytes.split_at(10_000);
    let (two, three) = rest.split_at(10_000);

    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, one, Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, 10_000);
    assert_eq!(upload_status(&c, &b, repo, &url).await, "0-9999");

    let res = patch(&c, &url, two, Some(10_000)).await;
    let url = accepted_chunk(&b, repo, &res, 20_000);
    assert_eq!(upload_status(&c, &b, repo, &url).await, "0-19999");
    assert_blob_absent(&c, &b, repo, &digest).await;

    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_RANGE, format!("20000-{}", bytes.len() - 1))
        .body(three.to_vec())
        .send()
        .await
        .unwrap();
    blob_created(&b, repo, &res, &digest);
    assert_blob(&c, &b, repo, &bytes).await;
    // A closed session takes no more chunks.
    let res = patch(&c, &url, b"more", Some(bytes.len() as u64)).await;
    expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn streamed_patch_without_content_range_end_5() {
    let (b, c) = start();
    let repo = "streamed";
    let bytes = varied_bytes(10, 1_500_001);
    let digest = sha256(&bytes);
    let url = open_upload(&c, &b, repo).await;
    // Chunked transfer encoding: neither Content-Range nor Content-Length.
    let frames: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(64 * 1024 + 3)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    let res = c
        .patch(&url)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(frames)))
        .send()
        .await
        .unwrap();
    let url = accepted_chunk(&b, repo, &res, bytes.len() as u64);
    assert_eq!(
        upload_status(&c, &b, repo, &url).await,
        format!("0-{}", bytes.len() - 1)
    );
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .send()
        .await
        .unwrap();
    blob_created(&b, repo, &res, &digest);
    assert_blob(&c, &b, repo, &bytes).await;
}

#[tokio::test]
async fn patch_out_of_order_chunk_is_416_end_5() {
    let (b, c) = start();
    let repo = "order";
    let bytes = varied_bytes(11, 30);
    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, &bytes[..10], Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, 10);
    // A gap, a repeat of the first chunk, an overlap: all refused, nothing appended.
    for (start, chunk) in [(20, &bytes[20..]), (0, &bytes[..10]), (5, &bytes[5..15])] {
        let res = patch(&c, &url, chunk, Some(start)).await;
        assert_eq!(header(res.headers(), "range"), "0-9", "start {start}");
        expect_error(
            res,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
        )
        .await;
        assert_eq!(
            upload_status(&c, &b, repo, &url).await,
            "0-9",
            "start {start}"
        );
    }
    // The right chunk still continues it, and the blob is exact.
    let res = patch(&c, &url, &bytes[10..], Some(10)).await;
    let url = accepted_chunk(&b, repo, &res, 30);
    let digest = sha256(&bytes);
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .send()
        .await
        .unwrap();
    blob_created(&b, repo, &res, &digest);
    assert_blob(&c, &b, repo, &bytes).await;
}

#[tokio::test]
async fn patch_content_range_disagreeing_with_length_is_size_invalid_end_5() {
    let (b, c) = start();
    let repo = "size";
    let url = open_upload(&c, &b, repo).await;
    let res = c
        .patch(&url)
        .header(CONTENT_RANGE, "0-9")
        .body(b"12345".to_vec())
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID").await;
    assert_eq!(upload_status(&c, &b, repo, &url).await, "0-0");
    // A malformed Content-Range is refused without touching the session either.
    for bad in ["abc", "9-5", "5"] {
        let res = c
            .patch(&url)
            .header(CONTENT_RANGE, bad)
            .body(b"12345".to_vec())
            .send()
            .await
            .unwrap();
        expect_error(
            res,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
        )
        .await;
    }
    assert_eq!(upload_status(&c, &b, repo, &url).await, "0-0");
}

#[tokio::test]
async fn put_without_digest_is_digest_invalid_end_6() {
    let (b, c) = start();
    let repo = "nodigest";
    let bytes = varied_bytes(12, 100);
    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, &bytes, Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, 100);
    let res = c.put(&url).send().await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let res = c
        .put(with_query(&url, "digest=sha256:12"))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let res = c.put(with_query(&url, "digest=")).send().await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_blob_absent(&c, &b, repo, &sha256(&bytes)).await;
}

#[tokio::test]
async fn put_with_wrong_digest_is_digest_invalid_and_nothing_is_stored_end_6() {
    let (b, c) = start();
    let repo = "wrongdigest";
    let bytes = varied_bytes(13, 5000);
    let claimed = sha256(&varied_bytes(14, 5000));
    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, &bytes, Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, 5000);
    let res = c
        .put(with_query(&url, &format!("digest={claimed}")))
        .send()
        .await
        .unwrap();
    let body = expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(
        body.to_string().contains(&claimed),
        "detail names the digest: {body}"
    );
    assert_blob_absent(&c, &b, repo, &claimed).await;
    assert_blob_absent(&c, &b, repo, &sha256(&bytes)).await;
    // A whole body on PUT with the wrong digest: the same.
    let url = open_upload(&c, &b, repo).await;
    let res = c
        .put(with_query(&url, &format!("digest={claimed}")))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_blob_absent(&c, &b, repo, &claimed).await;
    assert_blob_absent(&c, &b, repo, &sha256(&bytes)).await;
}

#[tokio::test]
async fn delete_upload_is_204_then_upload_unknown_end_14() {
    let (b, c) = start();
    let repo = "cancel";
    let bytes = varied_bytes(15, 64);
    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, &bytes, Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, 64);
    let res = delete(&c, &url).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_api_version(res.headers());

    expect_error(
        get(&c, &url).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let res = patch(&c, &url, &bytes, Some(64)).await;
    expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let res = c
        .put(with_query(&url, &format!("digest={}", sha256(&bytes))))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    expect_error(
        delete(&c, &url).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_blob_absent(&c, &b, repo, &sha256(&bytes)).await;
}

#[tokio::test]
async fn upload_id_under_another_repository_is_upload_unknown_end_13() {
    let (b, c) = start();
    let bytes = varied_bytes(16, 200);
    let digest = sha256(&bytes);
    let url = open_upload(&c, &b, "owner/repo").await;
    let res = patch(&c, &url, &bytes[..100], Some(0)).await;
    let url = accepted_chunk(&b, "owner/repo", &res, 100);
    push_image(&c, &b.url, "other/repo", "v1", "other").await;
    for thief in ["other/repo", "not/created"] {
        let stolen = url.replace("/v2/owner/repo/", &format!("/v2/{thief}/"));
        assert_ne!(stolen, url);
        expect_error(
            get(&c, &stolen).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        let res = patch(&c, &stolen, &bytes[100..], Some(100)).await;
        expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let res = c
            .put(with_query(&stolen, &format!("digest={digest}")))
            .body(bytes[100..].to_vec())
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        expect_error(
            delete(&c, &stolen).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        assert_blob_absent(&c, &b, thief, &digest).await;
    }
    // The owner's session was not touched.
    assert_eq!(upload_status(&c, &b, "owner/repo", &url).await, "0-99");
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .header(CONTENT_RANGE, "100-199")
        .body(bytes[100..].to_vec())
        .send()
        .await
        .unwrap();
    blob_created(&b, "owner/repo", &res, &digest);
    assert_blob(&c, &b, "owner/repo", &bytes).await;
}

#[tokio::test]
async fn malformed_or_never_issued_upload_id_is_upload_unknown_end_13() {
    let (b, c) = start();
    let never = "0b7a6c8e-3f5a-4c1e-9d2b-1a2b3c4d5e6f";
    let ids = [
        "not-a-uuid",
        "0b7a6c8e3f5a4c1e9d2b1a2b3c4d5e6f",
        "0b7a6c8e-3f5a-4c1e-9d2b-1a2b3c4d5e6f0",
        "0B7A6C8E-3F5A-4C1E-9D2B-1A2B3C4D5E6F",
        never,
    ];
    for id in ids {
        let url = b.at(&format!("/v2/any/blobs/uploads/{id}"));
        expect_error(
            get(&c, &url).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        let res = patch(&c, &url, b"x", None).await;
        expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let res = c
            .put(with_query(&url, &format!("digest={}", sha256(b"x"))))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        expect_error(
            delete(&c, &url).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
    }
}

#[tokio::test]
async fn chunked_upload_resumes_after_a_restart_end_13() {
    let mut b = Berth::start();
    let c = client();
    let repo = "resume/app";
    let bytes = varied_bytes(17, 1_200_003);
    let digest = sha256(&bytes);
    let split = 700_001;
    let url = open_upload(&c, &b, repo).await;
    let res = patch(&c, &url, &bytes[..split], Some(0)).await;
    let url = accepted_chunk(&b, repo, &res, split as u64);
    drop(c);

    b.restart();
    let c = client();
    assert_eq!(
        upload_status(&c, &b, repo, &url).await,
        format!("0-{}", split - 1)
    );
    let res = patch(&c, &url, &bytes[split..], Some(split as u64)).await;
    let url = accepted_chunk(&b, repo, &res, bytes.len() as u64);
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .send()
        .await
        .unwrap();
    blob_created(&b, repo, &res, &digest);
    assert_blob(&c, &b, repo, &bytes).await;
}

// ---------------------------------------------------------------------------------------
// end-11: cross-repository mounts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn mount_from_a_repository_that_has_the_blob_is_201_end_11() {
    let (b, c) = start();
    let bytes = varied_bytes(18, 4096);
    let digest = push_blob(&c, &b.url, "mount/source", &bytes).await;
    assert_blob_absent(&c, &b, "mount/target", &digest).await;
    let res = c
        .post(b.at(&format!(
            "/v2/mount/target/blobs/uploads/?mount={digest}&from=mount/source"
        )))
        .send()
        .await
        .unwrap();
    let location = blob_created(&b, "mount/target", &res, &digest);
    assert_eq!(get(&c, &location).await.bytes().await.unwrap(), bytes);
    assert_blob(&c, &b, "mount/target", &bytes).await;
    // Unlinking in the target leaves the source alone.
    let res = delete(&c, &b.at(&format!("/v2/mount/target/blobs/{digest}"))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_blob_absent(&c, &b, "mount/target", &digest).await;
    assert_blob(&c, &b, "mount/source", &bytes).await;
}

#[tokio::test]
async fn mount_that_cannot_be_done_starts_an_upload_202_end_11() {
    let (b, c) = start();
    let bytes = varied_bytes(19, 2048);
    let digest = push_blob(&c, &b.url, "mount/has", &bytes).await;
    push_image(&c, &b.url, "mount/lacks", "v1", "lacks").await;
    let queries = [
        format!("mount={digest}&from=mount/lacks"),
        format!("mount={digest}&from=mount/never-created"),
        format!("mount={digest}&from=Not/Valid"),
        format!("mount={digest}"),
    ];
    for query in queries {
        let res = c
            .post(b.at(&format!("/v2/mount/target/blobs/uploads/?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{query}");
        let url = session_url(&b, "mount/target", res.headers());
        assert_blob_absent(&c, &b, "mount/target", &digest).await;
        // The new session works like any other.
        assert_eq!(upload_status(&c, &b, "mount/target", &url).await, "0-0");
        let res = delete(&c, &url).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let res = c
        .post(b.at(&format!(
            "/v2/mount/target/blobs/uploads/?mount={digest}&from=mount/lacks"
        )))
        .send()
        .await
        .unwrap();
    let url = session_url(&b, "mount/target", res.headers());
    let res = c
        .put(with_query(&url, &format!("digest={digest}")))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    blob_created(&b, "mount/target", &res, &digest);
    assert_blob(&c, &b, "mount/target", &bytes).await;
    // A malformed mount digest is refused.
    let res = c
        .post(b.at("/v2/mount/target/blobs/uploads/?mount=sha256:xyz&from=mount/has"))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

// ---------------------------------------------------------------------------------------
// end-3, end-7, end-9: manifests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn oci_image_manifest_put_get_head_delete_by_tag_and_digest_end_3_end_7_end_9() {
    let (b, c) = start();
    let body = pushed_image_manifest(&c, &b, "m/oci", 1).await;
    manifest_round_trip(&c, &b, "m/oci", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn oci_index_with_children_pushed_first_end_3_end_7_end_9() {
    let (b, c) = start();
    let repo = "m/index";
    let amd = pushed_image_manifest(&c, &b, repo, 2).await;
    let arm = pushed_image_manifest(&c, &b, repo, 3).await;
    push_manifest(&c, &b, repo, &sha256(&amd), OCI_MANIFEST, &amd).await;
    push_manifest(&c, &b, repo, &sha256(&arm), OCI_MANIFEST, &arm).await;
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [platform_entry(OCI_MANIFEST, &amd, "amd64"), platform_entry(OCI_MANIFEST, &arm, "arm64")],
    }))
    .unwrap();
    manifest_round_trip(&c, &b, repo, OCI_INDEX, &index).await;
    // The children outlive the index.
    assert_manifest(&c, &b, repo, &sha256(&amd), OCI_MANIFEST, &amd).await;
    assert_manifest(&c, &b, repo, &sha256(&arm), OCI_MANIFEST, &arm).await;
}

#[tokio::test]
async fn docker_schema2_manifest_put_get_head_delete_end_3_end_7_end_9() {
    let (b, c) = start();
    let body = pushed_docker_manifest(&c, &b, "m/docker", 4).await;
    manifest_round_trip(&c, &b, "m/docker", DOCKER_MANIFEST, &body).await;
}

#[tokio::test]
async fn docker_manifest_list_put_get_head_delete_end_3_end_7_end_9() {
    let (b, c) = start();
    let repo = "m/list";
    let one = pushed_docker_manifest(&c, &b, repo, 5).await;
    let two = pushed_docker_manifest(&c, &b, repo, 6).await;
    push_manifest(&c, &b, repo, &sha256(&one), DOCKER_MANIFEST, &one).await;
    push_manifest(&c, &b, repo, &sha256(&two), DOCKER_MANIFEST, &two).await;
    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [platform_entry(DOCKER_MANIFEST, &one, "amd64"), platform_entry(DOCKER_MANIFEST, &two, "arm64")],
    }))
    .unwrap();
    manifest_round_trip(&c, &b, repo, DOCKER_LIST, &list).await;
    assert_manifest(&c, &b, repo, &sha256(&one), DOCKER_MANIFEST, &one).await;
}

#[tokio::test]
async fn manifest_of_one_repository_is_unknown_in_another_end_3() {
    let (b, c) = start();
    let digest = push_image(&c, &b.url, "iso/a", "v1", "a").await;
    push_image(&c, &b.url, "iso/b", "v1", "b").await;
    assert_manifest_unknown(&c, &b, "iso/b", &digest).await;
    // And an index in B may not name it as a child.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": digest, "size": 10 }],
    }))
    .unwrap();
    let res = put_manifest(&c, &b.url, "iso/b", "idx", OCI_INDEX, &index).await;
    expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn manifest_with_missing_blob_is_manifest_blob_unknown_and_not_stored_end_7() {
    let (b, c) = start();
    let repo = "missing";
    push_image(&c, &b.url, repo, "present", "p").await;
    let config = b"{\"config\":1}".to_vec();
    let layer = varied_bytes(20, 300);
    push_blob(&c, &b.url, repo, &config).await;
    // Missing layer, then missing config.
    let missing_layer = image_manifest(&config, &[&layer]);
    let res = put_manifest(&c, &b.url, repo, "broken", OCI_MANIFEST, &missing_layer).await;
    let body = expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(
        body.to_string().contains(&sha256(&layer)),
        "detail names the missing layer: {body}"
    );
    let missing_config = image_manifest(b"{\"absent\":true}", &[]);
    let res = put_manifest(&c, &b.url, repo, "broken", OCI_MANIFEST, &missing_config).await;
    expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let res = put_manifest(
        &c,
        &b.url,
        repo,
        &sha256(&missing_layer),
        OCI_MANIFEST,
        &missing_layer,
    )
    .await;
    expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // Nothing stored: neither tag nor digest.
    assert_manifest_unknown(&c, &b, repo, "broken").await;
    assert_manifest_unknown(&c, &b, repo, &sha256(&missing_layer)).await;
    assert_manifest_unknown(&c, &b, repo, &sha256(&missing_config)).await;
    assert_eq!(tags(&c, &b, repo).await, ["present"]);
    // Once the layer is there, the same manifest goes in.
    push_blob(&c, &b.url, repo, &layer).await;
    push_manifest(&c, &b, repo, "broken", OCI_MANIFEST, &missing_layer).await;
}

#[tokio::test]
async fn index_with_unknown_child_is_manifest_blob_unknown_end_7() {
    let (b, c) = start();
    let repo = "idx/unknown";
    let known = pushed_image_manifest(&c, &b, repo, 7).await;
    push_manifest(&c, &b, repo, &sha256(&known), OCI_MANIFEST, &known).await;
    let unknown = pushed_image_manifest(&c, &b, repo, 8).await; // blobs pushed, manifest not
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &known), descriptor(OCI_MANIFEST, &unknown)],
    }))
    .unwrap();
    let res = put_manifest(&c, &b.url, repo, "multi", OCI_INDEX, &index).await;
    let body = expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(body.to_string().contains(&sha256(&unknown)), "{body}");
    assert!(!body.to_string().contains(&sha256(&known)), "{body}");
    assert_manifest_unknown(&c, &b, repo, "multi").await;
    assert_manifest_unknown(&c, &b, repo, &sha256(&index)).await;
}

#[tokio::test]
async fn media_type_disagreeing_with_content_type_is_manifest_invalid_end_7() {
    let (b, c) = start();
    let repo = "mismatch";
    let body = pushed_image_manifest(&c, &b, repo, 9).await;
    for content_type in [DOCKER_MANIFEST, OCI_INDEX, "application/json"] {
        let res = put_manifest(&c, &b.url, repo, "v1", content_type, &body).await;
        expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    // The repository came into being through its blobs at most; no manifest was stored.
    let res = get(
        &c,
        &b.at(&format!("/v2/{repo}/manifests/{}", sha256(&body))),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Content-Type parameters are not part of the media type.
    let res = put_manifest(
        &c,
        &b.url,
        repo,
        "v1",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &body,
    )
    .await;
    manifest_created(&b, repo, res, &body).await;
    assert_manifest(&c, &b, repo, "v1", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn malformed_manifest_is_manifest_invalid_end_7() {
    let (b, c) = start();
    let repo = "malformed";
    push_image(&c, &b.url, repo, "ok", "ok").await;
    let config = b"{}".to_vec();
    push_blob(&c, &b.url, repo, &config).await;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", b"{\"schemaVersion\": 2,".to_vec()),
        ("not JSON", b"hello".to_vec()),
        ("empty body", Vec::new()),
        ("array", b"[]".to_vec()),
        ("schemaVersion 3", serde_json::to_vec(&json!({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, &config), "layers": []})).unwrap()),
        ("no config", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})).unwrap()),
        ("bad descriptor digest", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": "sha256:xyz", "size": 2}, "layers": []})).unwrap()),
        ("negative size", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": -1}, "layers": []})).unwrap()),
        ("manifest and index at once", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, &config), "layers": [], "manifests": []})).unwrap()),
    ];
    for (what, body) in bad {
        let res = put_manifest(&c, &b.url, repo, "bad", OCI_MANIFEST, &body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        expect_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    assert_manifest_unknown(&c, &b, repo, "bad").await;
    assert_eq!(tags(&c, &b, repo).await, ["ok"]);
}

#[tokio::test]
async fn manifest_over_4_mib_is_413_and_4_mib_is_accepted_end_7() {
    let (b, c) = start();
    let repo = "big";
    let config = b"{}".to_vec();
    push_blob(&c, &b.url, repo, &config).await;
    // A valid manifest padded through an annotation to exactly `len` bytes.
    let padded = |len: usize| {
        let doc = |pad: usize| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config),
                "layers": [],
                "annotations": { "pad": "a".repeat(pad) },
            }))
            .unwrap()
        };
        let base = doc(0).len();
        let body = doc(len - base);
        assert_eq!(body.len(), len);
        body
    };
    let over = padded(MAX_MANIFEST_BYTES + 1);
    let res = put_manifest(&c, &b.url, repo, "over", OCI_MANIFEST, &over).await;
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
    // Far over the limit, the server answers before the client has sent everything and
    // closes the connection (hyper does no lingering close), so a hyper-based client may
    // see a broken pipe instead of the 413; either way nothing is stored.
    let much_over = padded(3 * MAX_MANIFEST_BYTES);
    let sent = c
        .put(b.at(&format!("/v2/{repo}/manifests/over")))
        .header(CONTENT_TYPE, OCI_MANIFEST)
        .body(much_over)
        .send()
        .await;
    match sent {
        Ok(res) => {
            expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
        }
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e:?}"),
    }
    let c = client();
    let res = get(&c, &b.at(&format!("/v2/{repo}/manifests/over"))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let limit = padded(MAX_MANIFEST_BYTES);
    push_manifest(&c, &b, repo, "limit", OCI_MANIFEST, &limit).await;
    assert_manifest(&c, &b, repo, "limit", OCI_MANIFEST, &limit).await;
}

#[tokio::test]
async fn put_manifest_by_digest_not_matching_body_is_digest_invalid_end_7() {
    let (b, c) = start();
    let repo = "bydigest";
    let body = pushed_image_manifest(&c, &b, repo, 10).await;
    let other = sha256(b"another document");
    let res = put_manifest(&c, &b.url, repo, &other, OCI_MANIFEST, &body).await;
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let res = put_manifest(&c, &b.url, repo, "sha256:1234", OCI_MANIFEST, &body).await;
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    push_image(&c, &b.url, repo, "exists", "e").await;
    assert_manifest_unknown(&c, &b, repo, &other).await;
    assert_manifest_unknown(&c, &b, repo, &sha256(&body)).await;
    // The right digest works.
    push_manifest(&c, &b, repo, &sha256(&body), OCI_MANIFEST, &body).await;
    assert_manifest(&c, &b, repo, &sha256(&body), OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn unknown_manifest_is_manifest_unknown_end_3_end_9() {
    let (b, c) = start();
    let repo = "known/repo";
    push_image(&c, &b.url, repo, "v1", "k").await;
    let unknown = sha256(b"no such manifest");
    assert_manifest_unknown(&c, &b, repo, "v2").await;
    assert_manifest_unknown(&c, &b, repo, &unknown).await;
    for reference in ["v2", unknown.as_str()] {
        let res = delete(&c, &b.at(&format!("/v2/{repo}/manifests/{reference}"))).await;
        expect_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
}

#[tokio::test]
async fn unknown_repository_is_name_unknown_end_3_end_8b_end_12a() {
    let (b, c) = start();
    push_image(&c, &b.url, "exists", "v1", "x").await;
    let digest = sha256(b"x");
    for path in [
        "/v2/nope/manifests/latest".to_owned(),
        format!("/v2/nope/manifests/{digest}"),
        "/v2/nope/tags/list".to_owned(),
        "/v2/exists/nope/tags/list".to_owned(),
        format!("/v2/nope/referrers/{digest}"),
    ] {
        expect_error(
            get(&c, &b.at(&path)).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        )
        .await;
    }
    expect_head_error(
        head(&c, &b.at("/v2/nope/manifests/latest")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn invalid_repository_name_is_name_invalid() {
    let (b, c) = start();
    let digest = sha256(b"n");
    let names = [
        "Upper", "team/App", "a..b", "-a", "a-", "a___b", "a//b", "a/",
    ];
    for name in names {
        for (method, path) in [
            (Method::GET, format!("/v2/{name}/manifests/latest")),
            (Method::PUT, format!("/v2/{name}/manifests/latest")),
            (Method::GET, format!("/v2/{name}/blobs/{digest}")),
            (Method::POST, format!("/v2/{name}/blobs/uploads/")),
            (Method::GET, format!("/v2/{name}/tags/list")),
            (Method::GET, format!("/v2/{name}/referrers/{digest}")),
        ] {
            let res = send(&c, method.clone(), &b.at(&path)).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{method} {path}");
            expect_error(res, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        }
    }
    let long = ["a"; 300].join("/");
    expect_error(
        get(&c, &b.at(&format!("/v2/{long}/tags/list"))).await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_tag_removes_only_that_tag_end_9() {
    let (b, c) = start();
    let repo = "untag";
    let body = pushed_image_manifest(&c, &b, repo, 11).await;
    let digest = sha256(&body);
    for tag in ["one", "two", "three"] {
        push_manifest(&c, &b, repo, tag, OCI_MANIFEST, &body).await;
    }
    let res = delete(&c, &b.at(&format!("/v2/{repo}/manifests/one"))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_manifest_unknown(&c, &b, repo, "one").await;
    assert_manifest(&c, &b, repo, "two", OCI_MANIFEST, &body).await;
    assert_manifest(&c, &b, repo, "three", OCI_MANIFEST, &body).await;
    assert_manifest(&c, &b, repo, &digest, OCI_MANIFEST, &body).await;
    assert_eq!(tags(&c, &b, repo).await, ["three", "two"]);
    let res = delete(&c, &b.at(&format!("/v2/{repo}/manifests/one"))).await;
    expect_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn deleting_by_digest_removes_the_manifest_and_all_its_tags_end_9() {
    let (b, c) = start();
    let repo = "undigest";
    let body = pushed_image_manifest(&c, &b, repo, 12).await;
    let digest = sha256(&body);
    for tag in ["a", "b"] {
        push_manifest(&c, &b, repo, tag, OCI_MANIFEST, &body).await;
    }
    let keep = pushed_image_manifest(&c, &b, repo, 13).await;
    push_manifest(&c, &b, repo, "keep", OCI_MANIFEST, &keep).await;

    let res = delete(&c, &b.at(&format!("/v2/{repo}/manifests/{digest}"))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_api_version(res.headers());
    for reference in ["a", "b", digest.as_str()] {
        assert_manifest_unknown(&c, &b, repo, reference).await;
    }
    assert_eq!(tags(&c, &b, repo).await, ["keep"]);
    assert_manifest(&c, &b, repo, "keep", OCI_MANIFEST, &keep).await;
    let res = delete(&c, &b.at(&format!("/v2/{repo}/manifests/{digest}"))).await;
    expect_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // A tag moves to a new manifest when pushed again.
    push_manifest(&c, &b, repo, "keep", OCI_MANIFEST, &body).await;
    assert_manifest(&c, &b, repo, "keep", OCI_MANIFEST, &body).await;
    assert_manifest(&c, &b, repo, &sha256(&keep), OCI_MANIFEST, &keep).await;
}

#[tokio::test]
async fn schema1_manifest_is_unsupported_415_end_7() {
    let (b, c) = start();
    let repo = "old";
    push_image(&c, &b.url, repo, "new", "n").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": repo,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{ "blobSum": sha256(b"layer") }],
        "history": [{ "v1Compatibility": "{}" }],
        "signatures": [],
    }))
    .unwrap();
    for content_type in [Some(SCHEMA1_SIGNED), Some(SCHEMA1), None] {
        let mut req = c
            .put(b.at(&format!("/v2/{repo}/manifests/v1")))
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let res = req.send().await.unwrap();
        expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED").await;
    }
    // Any other unknown media type is unsupported too, never a 500.
    let res = put_manifest(
        &c,
        &b.url,
        repo,
        "v1",
        "application/x-unknown+json",
        b"{\"schemaVersion\":2}",
    )
    .await;
    expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED").await;
    assert_manifest_unknown(&c, &b, repo, "v1").await;
}

// ---------------------------------------------------------------------------------------
// end-7 (subject), end-12a/b: referrers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn artifact_with_unknown_subject_is_201_with_oci_subject_end_7() {
    let (b, c) = start();
    let repo = "subject/missing";
    push_blob(&c, &b.url, repo, b"{}").await;
    let subject = sha256(b"a manifest that was never pushed");
    let body = artifact(
        Some("application/vnd.example.sbom.v1"),
        descriptor(OCI_EMPTY, b"{}"),
        json!({ "mediaType": OCI_MANIFEST, "digest": subject, "size": 1234 }),
        None,
    );
    let res = put_manifest(&c, &b.url, repo, &sha256(&body), OCI_MANIFEST, &body).await;
    assert_eq!(header(res.headers(), "oci-subject"), subject);
    manifest_created(&b, repo, res, &body).await;
    assert_manifest(&c, &b, repo, &sha256(&body), OCI_MANIFEST, &body).await;
    let (_, found) = referrers(&c, &b, repo, &subject, None).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sha256(&body));
    // A manifest without a subject gets no OCI-Subject.
    let plain = pushed_image_manifest(&c, &b, repo, 14).await;
    let res = put_manifest(&c, &b.url, repo, "plain", OCI_MANIFEST, &plain).await;
    assert!(res.headers().get("oci-subject").is_none());
    manifest_created(&b, repo, res, &plain).await;
}

#[tokio::test]
async fn referrers_without_any_is_an_empty_index_end_12a() {
    let (b, c) = start();
    let digest = push_image(&c, &b.url, "ref/none", "v1", "none").await;
    for subject in [digest, sha256(b"unknown subject")] {
        let (headers, found) = referrers(&c, &b, "ref/none", &subject, None).await;
        assert!(found.is_empty(), "{found:?}");
        assert!(headers.get("oci-filters-applied").is_none());
    }
    let res = get(&c, &b.at("/v2/ref/none/referrers/sha256:short")).await;
    expect_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn referrers_list_and_artifact_type_filter_end_12a_end_12b() {
    let (b, c) = start();
    let repo = "ref/app";
    let image = pushed_image_manifest(&c, &b, repo, 15).await;
    push_manifest(&c, &b, repo, "v1", OCI_MANIFEST, &image).await;
    let subject = sha256(&image);
    let subject_descriptor = descriptor(OCI_MANIFEST, &image);
    push_blob(&c, &b.url, repo, b"{}").await;
    let sig_config = b"{\"signature\":true}".to_vec();
    push_blob(&c, &b.url, repo, &sig_config).await;

    let sbom_type = "application/vnd.example.sbom.v1+json";
    let sig_type = "application/vnd.example.signature.config.v1+json";
    let sbom = artifact(
        Some(sbom_type),
        descriptor(OCI_EMPTY, b"{}"),
        subject_descriptor.clone(),
        Some(
            json!({ "org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-01T00:00:00Z" }),
        ),
    );
    // No artifactType: the referrers API reports the config's media type (spec MUST).
    let sig = artifact(
        None,
        descriptor(sig_type, &sig_config),
        subject_descriptor,
        None,
    );
    for body in [&sbom, &sig] {
        let res = put_manifest(&c, &b.url, repo, &sha256(body), OCI_MANIFEST, body).await;
        assert_eq!(header(res.headers(), "oci-subject"), subject);
        manifest_created(&b, repo, res, body).await;
    }

    let (headers, found) = referrers(&c, &b, repo, &subject, None).await;
    assert!(headers.get("oci-filters-applied").is_none());
    assert_eq!(found.len(), 2, "{found:?}");
    let by_digest = |d: &str| {
        found
            .iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} missing: {found:?}"))
            .clone()
    };
    let s = by_digest(&sha256(&sbom));
    assert_eq!(s["mediaType"], OCI_MANIFEST);
    assert_eq!(s["size"], sbom.len());
    assert_eq!(s["artifactType"], sbom_type);
    assert_eq!(s["annotations"]["org.example.kind"], "sbom");
    assert_eq!(
        s["annotations"]["org.opencontainers.image.created"],
        "2024-01-01T00:00:00Z"
    );
    let g = by_digest(&sha256(&sig));
    assert_eq!(g["mediaType"], OCI_MANIFEST);
    assert_eq!(g["size"], sig.len());
    assert_eq!(g["artifactType"], sig_type);
    assert!(
        g.get("annotations")
            .is_none_or(|a| a.as_object().is_some_and(|a| a.is_empty())),
        "{g}"
    );

    let (headers, found) = referrers(&c, &b, repo, &subject, Some(sbom_type)).await;
    assert_eq!(header(&headers, "oci-filters-applied"), "artifactType");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sha256(&sbom));
    let (headers, found) = referrers(&c, &b, repo, &subject, Some(sig_type)).await;
    assert_eq!(header(&headers, "oci-filters-applied"), "artifactType");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sha256(&sig));
    let (headers, found) = referrers(&c, &b, repo, &subject, Some("application/x-none")).await;
    assert_eq!(header(&headers, "oci-filters-applied"), "artifactType");
    assert!(found.is_empty());

    // A deleted referrer is no longer listed; the subject itself is not a referrer.
    let res = delete(
        &c,
        &b.at(&format!("/v2/{repo}/manifests/{}", sha256(&sbom))),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (_, found) = referrers(&c, &b, repo, &subject, None).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sha256(&sig));
    // Referrers are per repository.
    push_image(&c, &b.url, "ref/other", "v1", "o").await;
    let (_, found) = referrers(&c, &b, "ref/other", &subject, None).await;
    assert!(found.is_empty());
}

// ---------------------------------------------------------------------------------------
// end-8a/b: tags and the catalog
// ---------------------------------------------------------------------------------------

const TAGS: [&str; 10] = [
    "v2", "latest", "1.0", "alpha", "Beta", "v10", "z", "a-b", "a_b", "a.b",
];

#[tokio::test]
async fn tags_list_is_lexical_and_paginates_with_link_end_8a_end_8b() {
    let (b, c) = start();
    let repo = "tagged/app";
    let body = pushed_image_manifest(&c, &b, repo, 16).await;
    for tag in TAGS {
        push_manifest(&c, &b, repo, tag, OCI_MANIFEST, &body).await;
    }
    let all = sorted(&TAGS);
    assert_eq!(tags(&c, &b, repo).await, all);

    let got = pages(&c, &b, &format!("/v2/{repo}/tags/list?n=3"), "tags").await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    assert_eq!(got.concat(), all);
    // A page that ends exactly at the last tag has no Link and no empty page follows.
    let got = pages(&c, &b, &format!("/v2/{repo}/tags/list?n=5"), "tags").await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5]);
    assert_eq!(got.concat(), all);
    let got = pages(&c, &b, &format!("/v2/{repo}/tags/list?n=10"), "tags").await;
    assert_eq!(got, std::slice::from_ref(&all));
    // `last` alone, and `last` with `n`.
    let got = pages(&c, &b, &format!("/v2/{repo}/tags/list?last=alpha"), "tags").await;
    let after_alpha: Vec<String> = all
        .iter()
        .filter(|t| t.as_str() > "alpha")
        .cloned()
        .collect();
    assert_eq!(got, std::slice::from_ref(&after_alpha));
    let got = pages(
        &c,
        &b,
        &format!("/v2/{repo}/tags/list?n=2&last=alpha"),
        "tags",
    )
    .await;
    assert_eq!(got.concat(), after_alpha);
    assert!(got.iter().all(|p| p.len() <= 2));
    let got = pages(&c, &b, &format!("/v2/{repo}/tags/list?last=z"), "tags").await;
    assert_eq!(got, [Vec::<String>::new()]);
    // A malformed `n` is a client error, never a 500.
    let res = get(&c, &b.at(&format!("/v2/{repo}/tags/list?n=minus"))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_api_version(res.headers());
}

#[tokio::test]
async fn catalog_is_lexical_and_paginates_with_link_end_8() {
    let (b, c) = start();
    let repos = ["b/x", "a", "c", "a/b", "a-b", "zeta/nested/deep"];
    for (i, repo) in repos.iter().enumerate() {
        push_image(&c, &b.url, repo, "v1", &format!("cat{i}")).await;
    }
    let all = sorted(&repos);
    assert_eq!(
        pages(&c, &b, "/v2/_catalog", "repositories").await,
        std::slice::from_ref(&all)
    );
    let got = pages(&c, &b, "/v2/_catalog?n=2", "repositories").await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(got.concat(), all);
    let got = pages(&c, &b, "/v2/_catalog?n=4&last=a-b", "repositories").await;
    assert_eq!(got.concat(), &all[2..]);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [4]);
}

#[tokio::test]
async fn page_size_above_the_cap_is_capped_end_8b() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[limits]\nmax_page_entries = 3\n").unwrap();
    let b = Berth::start_with(&["--config", config.to_str().unwrap()]);
    let c = client();
    let repo = "capped";
    let body = pushed_image_manifest(&c, &b, repo, 17).await;
    let names = ["e", "d", "c", "b", "a"];
    for tag in names {
        push_manifest(&c, &b, repo, tag, OCI_MANIFEST, &body).await;
    }
    for first in [
        format!("/v2/{repo}/tags/list?n=1000"),
        format!("/v2/{repo}/tags/list"),
    ] {
        let got = pages(&c, &b, &first, "tags").await;
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 2],
            "{first}"
        );
        assert_eq!(got.concat(), sorted(&names));
    }
    let got = pages(
        &c,
        &b,
        &format!("/v2/{repo}/tags/list?n=4294967295"),
        "tags",
    )
    .await;
    assert_eq!(got.concat(), sorted(&names));
    assert_eq!(got[0].len(), 3);
    for repo in ["r1", "r2", "r3", "r4"] {
        push_image(&c, &b.url, repo, "v1", repo).await;
    }
    let got = pages(&c, &b, "/v2/_catalog?n=100", "repositories").await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(got.concat(), sorted(&["capped", "r1", "r2", "r3", "r4"]));
}

#[tokio::test]
async fn tags_of_unknown_repository_is_name_unknown_end_8a() {
    let (b, c) = start();
    push_image(&c, &b.url, "known", "v1", "k").await;
    for path in [
        "/v2/unknown/tags/list",
        "/v2/unknown/tags/list?n=10&last=a",
        "/v2/known/sub/tags/list",
    ] {
        expect_error(
            get(&c, &b.at(path)).await,
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        )
        .await;
    }
    assert_eq!(tags(&c, &b, "known").await, ["v1"]);
}

// ---------------------------------------------------------------------------------------
// Methods and paths that are not endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn method_not_allowed_is_a_json_error_with_allow_never_500() {
    let (b, c) = start();
    let digest = push_image(&c, &b.url, "methods", "v1", "m").await;
    let never = "0b7a6c8e-3f5a-4c1e-9d2b-1a2b3c4d5e6f";
    let unknown = sha256(b"unknown blob");
    // Every endpoint, with (method, allowed?) checked against its own Allow header: a
    // method in Allow must be served (whatever the answer), one not in it must be a 405.
    // References are unknown, so the allowed methods change nothing.
    let endpoints: [(String, &str); 8] = [
        ("/v2/".to_owned(), "GET, HEAD"),
        ("/v2/_catalog".to_owned(), "GET"),
        (
            "/v2/methods/manifests/none".to_owned(),
            "GET, HEAD, PUT, DELETE",
        ),
        (format!("/v2/methods/blobs/{unknown}"), "GET, HEAD, DELETE"),
        ("/v2/methods/blobs/uploads/".to_owned(), "POST"),
        (
            format!("/v2/methods/blobs/uploads/{never}"),
            "GET, PATCH, PUT, DELETE",
        ),
        ("/v2/methods/tags/list".to_owned(), "GET"),
        (format!("/v2/methods/referrers/{digest}"), "GET"),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    for (path, allow) in &endpoints {
        for method in &methods {
            let res = send(&c, method.clone(), &b.at(path)).await;
            let allowed = allow.split(", ").any(|m| m == method.as_str());
            if allowed {
                assert_ne!(
                    res.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert!(
                    !res.status().is_server_error(),
                    "{method} {path}: {}",
                    res.status()
                );
                assert_api_version(res.headers());
                continue;
            }
            assert_eq!(
                res.headers().get("allow").map(|v| v.to_str().unwrap()),
                Some(*allow),
                "{method} {path}: Allow of a 405"
            );
            if *method == Method::HEAD {
                expect_head_error(res, StatusCode::METHOD_NOT_ALLOWED).await;
            } else {
                expect_error(res, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
            }
        }
    }
    // Nothing was changed by those requests.
    assert_eq!(tags(&c, &b, "methods").await, ["v1"]);
    assert_manifest_unknown(&c, &b, "methods", "none").await;
}

#[tokio::test]
async fn catalog_with_trailing_slash_is_not_the_catalog() {
    let (b, c) = start();
    push_image(&c, &b.url, "hidden", "v1", "h").await;
    for path in [
        "/v2/_catalog/",
        "/v2/_catalog/x",
        "/v2//_catalog",
        "/v2/hidden/tags/list/",
    ] {
        let res = get(&c, &b.at(path)).await;
        assert_ne!(res.status(), StatusCode::OK, "{path}");
        assert_api_version(res.headers());
        let text = res.text().await.unwrap();
        assert!(!text.contains("hidden"), "{path} leaked a listing: {text}");
    }
    expect_error(
        get(&c, &b.at("/v2/_catalog/")).await,
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
}
