//! A minimal OCI Distribution client over reqwest: blob pushes (monolithic POST + PUT, and
//! chunked PATCHes), pulls, HEADs, manifest PUT/GET and paginated tag lists, with the
//! registry token flow (`WWW-Authenticate: Bearer`, tokens cached per scope) and Basic
//! challenges. One pooled HTTP/1.1 client per registry; blob GETs go through `raw_pull`
//! when they can. It measures nothing itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{
    HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::raw_pull::{self, RawPull};

/// The manifest types a GET accepts.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Liveness bound of one request (a 512 MiB transfer included); never a speed assertion.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Credentials for Basic challenges and for the token endpoint.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// What the registry asked for on `GET /v2/`.
#[derive(Debug, Clone, PartialEq)]
enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A registry at one base URL.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    creds: Credentials,
    challenge: Mutex<Arc<Challenge>>,
    /// Bearer tokens by scope (`repository:NAME:pull,push`).
    tokens: Mutex<HashMap<String, String>>,
    /// Held while a token is fetched.
    fetching: tokio::sync::Mutex<()>,
}

/// What a pull read.
#[derive(Debug)]
pub struct Pulled {
    /// Bytes received.
    pub bytes: u64,
    /// `sha256:<hex>` of them, if asked for.
    pub digest: Option<String>,
}

/// `repository:<repo>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// `repository:<repo>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

impl Client {
    /// A client for the registry at `base` (`http://HOST:PORT`); asks `GET /v2/` once to
    /// learn whether and how it wants authentication.
    ///
    /// # Errors
    /// The registry is unreachable or answers neither 200 nor a 401 challenge.
    pub async fn connect(base: &str, creds: Credentials) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        let base = Url::parse(base).with_context(|| format!("registry URL {base}"))?;
        let client = Client {
            http,
            base,
            creds,
            challenge: Mutex::new(Arc::new(Challenge::None)),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        };
        let res = client.http.get(client.url("/v2/")?).send().await?;
        match res.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                *client.challenge.lock().unwrap() = Arc::new(parse_challenge(&res)?);
            }
            other => bail!("GET /v2/ answered {other}"),
        }
        Ok(client)
    }

    fn url(&self, path: &str) -> Result<Url> {
        Ok(self.base.join(path)?)
    }

    /// Sends the request `build` makes, with credentials for `scope` (a Bearer token is
    /// fetched first if none is cached); on a 401 learns the challenge, drops the cached
    /// token, and sends a rebuilt request once more.
    async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        self.ensure_token(scope).await?;
        let res = self.authorize(build(&self.http), scope).send().await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        *self.challenge.lock().unwrap() = Arc::new(parse_challenge(&res)?);
        self.tokens.lock().unwrap().remove(scope);
        self.ensure_token(scope).await?;
        Ok(self.authorize(build(&self.http), scope).send().await?)
    }

    /// Under a Bearer challenge, fetches a token for `scope` unless one is cached; one
    /// fetch at a time, so concurrent requests do not all ask the realm.
    async fn ensure_token(&self, scope: &str) -> Result<()> {
        let challenge = self.challenge.lock().unwrap().clone();
        let Challenge::Bearer { realm, service } = &*challenge else {
            return Ok(());
        };
        if self.tokens.lock().unwrap().contains_key(scope) {
            return Ok(());
        }
        let _one_at_a_time = self.fetching.lock().await;
        if self.tokens.lock().unwrap().contains_key(scope) {
            return Ok(());
        }
        let token = self
            .fetch_token(realm, service.as_deref(), scope)
            .await
            .with_context(|| format!("token for {scope}"))?;
        self.tokens.lock().unwrap().insert(scope.to_owned(), token);
        Ok(())
    }

    fn authorize(&self, req: RequestBuilder, scope: &str) -> RequestBuilder {
        let challenge = self.challenge.lock().unwrap().clone();
        match &*challenge {
            Challenge::None => req,
            Challenge::Basic => match &self.creds.username {
                Some(user) => req.basic_auth(user, self.creds.password.as_deref()),
                None => req,
            },
            Challenge::Bearer { .. } => match self.tokens.lock().unwrap().get(scope) {
                Some(token) => req.bearer_auth(token),
                None => req,
            },
        }
    }

    /// Gets a token from the realm for `scope` (Docker token protocol).
    async fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        let mut url = Url::parse(realm).with_context(|| format!("token realm {realm}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(url);
        if let Some(user) = &self.creds.username {
            req = req.basic_auth(user, self.creds.password.as_deref());
        }
        let res = expect(req.send().await?, StatusCode::OK, "token").await?;
        let body: serde_json::Value = res.json().await?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("token response without token"))
    }

    /// Starts an upload session (`POST /v2/<repo>/blobs/uploads/`); returns its URL.
    async fn start_upload(&self, repo: &str) -> Result<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let res = self
            .send(&push_scope(repo), |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let res = expect(res, StatusCode::ACCEPTED, "POST upload").await?;
        self.location(&res)
    }

    fn location(&self, res: &Response) -> Result<Url> {
        let loc = res
            .headers()
            .get(LOCATION)
            .ok_or_else(|| anyhow!("{} without Location", res.status()))?
            .to_str()?;
        Ok(self.base.join(loc)?)
    }

    /// Monolithic push: POST a session, then one PUT `?digest=` carrying the whole body.
    /// (Distribution 2.8 ignores the body of a single `POST ?digest=`, so both registries
    /// get this two-request form.) `body` builds the body anew if a retry is needed.
    ///
    /// # Errors
    /// Any status other than 202 then 201.
    pub async fn push_monolithic(
        &self,
        repo: &str,
        digest: &str,
        len: u64,
        body: impl Fn() -> reqwest::Body,
    ) -> Result<()> {
        let mut url = self.start_upload(repo).await?;
        url.query_pairs_mut().append_pair("digest", digest);
        let res = self
            .send(&push_scope(repo), |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .body(body())
            })
            .await?;
        expect(res, StatusCode::CREATED, "PUT upload").await?;
        Ok(())
    }

    /// Chunked push: POST, then PATCHes of `chunk` bytes with `Content-Range`, following
    /// each `Location`, then a PUT `?digest=` without body. `body(start, end)` streams a range.
    ///
    /// # Errors
    /// Any status other than 202 for POST/PATCH and 201 for the PUT.
    pub async fn push_chunked(
        &self,
        repo: &str,
        digest: &str,
        len: u64,
        chunk: u64,
        body: impl Fn(u64, u64) -> reqwest::Body,
    ) -> Result<()> {
        let scope = push_scope(repo);
        let mut url = self.start_upload(repo).await?;
        let mut start = 0;
        while start < len {
            let end = (start + chunk).min(len);
            let res = self
                .send(&scope, |c| {
                    c.patch(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, end - start)
                        .header("content-range", format!("{start}-{}", end - 1))
                        .body(body(start, end))
                })
                .await?;
            let res = expect(res, StatusCode::ACCEPTED, "PATCH chunk").await?;
            url = self.location(&res)?;
            start = end;
        }
        url.query_pairs_mut().append_pair("digest", digest);
        let res = self
            .send(&scope, |c| c.put(url.clone()).header(CONTENT_LENGTH, 0))
            .await?;
        expect(res, StatusCode::CREATED, "PUT close upload").await?;
        Ok(())
    }

    /// Pushes a small in-memory blob (POST + PUT, as [`Client::push_monolithic`]).
    ///
    /// # Errors
    /// As [`Client::push_monolithic`].
    pub async fn push_small(&self, repo: &str, digest: &str, bytes: &Bytes) -> Result<()> {
        self.push_monolithic(repo, digest, bytes.len() as u64, || {
            reqwest::Body::from(bytes.clone())
        })
        .await
    }

    /// GETs a blob, streaming it; counts its bytes and, if `hash`, computes its sha256.
    ///
    /// # Errors
    /// Any status other than 200, or a broken body.
    pub async fn pull(&self, repo: &str, digest: &str, hash: bool) -> Result<Pulled> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let scope = pull_scope(repo);
        self.ensure_token(&scope).await?;
        let request = self.authorize(self.http.get(url.clone()), &scope).build()?;
        if let RawPull::Done { bytes, digest } =
            raw_pull::get(&url, request.headers(), hash).await?
        {
            return Ok(Pulled { bytes, digest });
        }
        let res = self.send(&scope, |c| c.get(url.clone())).await?;
        let res = expect(res, StatusCode::OK, "GET blob").await?;
        let mut hasher = hash.then(Sha256::new);
        let mut bytes = 0u64;
        let mut stream = res.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            bytes += piece.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&piece);
            }
        }
        Ok(Pulled {
            bytes,
            digest: hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
        })
    }

    /// HEADs a blob; expects 200.
    ///
    /// # Errors
    /// Any other status.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let res = self
            .send(&pull_scope(repo), |c| c.head(url.clone()))
            .await?;
        expect(res, StatusCode::OK, "HEAD blob").await?;
        Ok(())
    }

    /// PUTs a manifest under a tag; expects 201.
    ///
    /// # Errors
    /// Any other status.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &Bytes,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let res = self
            .send(&push_scope(repo), |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        expect(res, StatusCode::CREATED, "PUT manifest").await?;
        Ok(())
    }

    /// GETs a manifest; returns its length after reading the whole body.
    ///
    /// # Errors
    /// Any status other than 200.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<usize> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let res = self
            .send(&pull_scope(repo), |c| {
                c.get(url.clone())
                    .header(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT))
            })
            .await?;
        let res = expect(res, StatusCode::OK, "GET manifest").await?;
        Ok(res.bytes().await?.len())
    }

    /// Lists a repository's tags, `n` per page (or unpaginated), following `Link` headers
    /// for at most `max_pages` pages. Returns (tags seen, pages fetched).
    ///
    /// # Errors
    /// Any status other than 200, a malformed body, or more than `max_pages` pages.
    pub async fn list_tags(
        &self,
        repo: &str,
        n: Option<u64>,
        max_pages: usize,
    ) -> Result<(usize, usize)> {
        let mut url = self.url(&format!("/v2/{repo}/tags/list"))?;
        if let Some(n) = n {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let (mut tags, mut pages) = (0, 0);
        loop {
            if pages >= max_pages {
                bail!("more than {max_pages} pages of tags");
            }
            let res = self.send(&pull_scope(repo), |c| c.get(url.clone())).await?;
            let res = expect(res, StatusCode::OK, "GET tags").await?;
            let next = next_link(&res)
                .map(|link| self.base.join(&link))
                .transpose()?;
            let body: serde_json::Value = res.json().await?;
            tags += body["tags"]
                .as_array()
                .ok_or_else(|| anyhow!("tag list without tags"))?
                .len();
            pages += 1;
            match next {
                Some(next) => url = next,
                None => return Ok((tags, pages)),
            }
        }
    }
}

/// Returns the response if its status is `want`, else an error with the body's start.
async fn expect(res: Response, want: StatusCode, what: &str) -> Result<Response> {
    if res.status() == want {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    bail!("{what}: expected {want}, got {status}: {text}")
}

/// The target of a `Link: <...>; rel="next"` header.
fn next_link(res: &Response) -> Option<String> {
    res.headers().get_all(LINK).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            params.contains("rel=\"next\"").then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        })
    })
}

/// Parses the `WWW-Authenticate` header of a 401.
fn parse_challenge(res: &Response) -> Result<Challenge> {
    let header = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .ok_or_else(|| anyhow!("401 without WWW-Authenticate"))?
        .to_str()?;
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        bail!("unsupported challenge {header}");
    }
    let params = auth_params(params);
    let realm = params
        .get("realm")
        .cloned()
        .ok_or_else(|| anyhow!("Bearer challenge without realm: {header}"))?;
    Ok(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `key="value",key=value` pairs; commas inside quotes belong to the value.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
}
