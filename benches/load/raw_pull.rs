//! A blob GET read straight off a socket into one reused 1 MiB buffer, for the pull
//! scenarios. Through reqwest each body chunk is a fresh allocation handed from the
//! connection task to the reader task; on two cores that cost the client more CPU than
//! the server spent sending, and capped a single pull near 2,400 MB/s whichever registry
//! served it. Only plain `http://` and a `Content-Length` body; anything else (a
//! challenge, a redirect, TLS) is left to the reqwest path.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use reqwest::header::HeaderMap;
use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Socket reads land here; large enough that a read is not bound by syscall count.
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// Liveness bound of the whole GET (a 512 MiB body included); never a speed assertion.
const GET_TIMEOUT: Duration = Duration::from_secs(600);

/// What a raw GET gave: the status it could not handle, or the body's length and digest.
pub enum RawPull {
    /// Not a 200 with a `Content-Length`, or not plain HTTP: use the general client.
    Unhandled,
    /// The whole body was read.
    Done { bytes: u64, digest: Option<String> },
}

/// GETs `url` with `headers` (credentials included) on a new connection and reads the
/// body, hashing it with sha256 if `hash`.
///
/// # Errors
/// Connection failures, a malformed response, a body shorter than its length, or the
/// time bound.
pub async fn get(url: &Url, headers: &HeaderMap, hash: bool) -> Result<RawPull> {
    if url.scheme() != "http" {
        return Ok(RawPull::Unhandled);
    }
    tokio::time::timeout(GET_TIMEOUT, get_plain(url, headers, hash))
        .await
        .context("raw GET timed out")?
}

async fn get_plain(url: &Url, headers: &HeaderMap, hash: bool) -> Result<RawPull> {
    let host = url.host_str().context("URL without host")?;
    let port = url.port_or_known_default().context("URL without port")?;
    let mut socket = TcpStream::connect((host, port)).await?;
    socket.set_nodelay(true)?;
    let mut request = format!(
        "GET {}{} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {}\r\n", value.to_str()?));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await?;

    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut filled = 0;
    let (head_len, body_len) = loop {
        let n = socket.read(&mut buffer[filled..]).await?;
        ensure!(n > 0, "connection closed inside the response head");
        filled += n;
        let mut header_slots = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut header_slots);
        if let httparse::Status::Complete(head_len) = response.parse(&buffer[..filled])? {
            if response.code != Some(200) {
                return Ok(RawPull::Unhandled);
            }
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).map(|v| v.trim().parse::<u64>()));
            match length {
                Some(Ok(Ok(len))) => break (head_len, len),
                _ => return Ok(RawPull::Unhandled),
            }
        }
        ensure!(
            filled < buffer.len(),
            "response head larger than {READ_BUFFER_BYTES} bytes"
        );
    };

    let mut hasher = hash.then(Sha256::new);
    let mut received = (filled - head_len) as u64;
    if let Some(h) = hasher.as_mut() {
        h.update(&buffer[head_len..filled]);
    }
    while received < body_len {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            bail!("body ended after {received} of {body_len} bytes");
        }
        received += n as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&buffer[..n]);
        }
    }
    ensure!(
        received == body_len,
        "body longer than its Content-Length {body_len}"
    );
    Ok(RawPull::Done {
        bytes: received,
        digest: hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
    })
}
