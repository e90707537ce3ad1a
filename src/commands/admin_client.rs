//! A small client of the admin API for the cluster commands: basic auth with the
//! administrator's password, JSON in and out, the server's error message on failure.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::cli::AdminArgs;

/// A client bound to one replica (or load balancer) and one administrator.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
}

impl AdminClient {
    /// Resolves the password (file, `BERTH_PASSWORD`, or a prompt on a terminal).
    ///
    /// # Errors
    /// No password can be found, or the HTTP client cannot be built.
    pub fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let password = password(args)?;
        Ok(AdminClient {
            http: http_client(args.ca_file.as_deref(), None)?,
            base: args.url.trim_end_matches('/').to_owned(),
            username: args.username.clone(),
            password,
        })
    }

    /// Sends `method` to `/api/v0/{path}` with an optional JSON body; answers the JSON reply.
    ///
    /// # Errors
    /// The replica cannot be reached, or answered an error (its message is included).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v0/{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .basic_auth(&self.username, Some(&self.password));
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let text = res.text().await.context("reading the answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("{url} answered {status}: {message}");
        }
        serde_json::from_str(&text).with_context(|| format!("{url} answered invalid JSON"))
    }
}

impl AdminClient {
    /// Sends `method` to `/api/v0/{path}` with a JSON body and answers the response once its
    /// status is a success, for a body to be streamed.
    ///
    /// # Errors
    /// The replica cannot be reached, or answered an error (its message is included).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/api/v0/{path}", self.base);
        let res = self
            .http
            .request(method, &url)
            .basic_auth(&self.username, Some(&self.password))
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let text = res.text().await.context("reading the answer")?;
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{url} answered {status}: {message}")
    }
}

/// An HTTP client that also trusts the CA in `ca_file` (a Berth cluster CA or a company
/// CA), with an overall `timeout` per request when given.
///
/// # Errors
/// The CA file cannot be read or holds no certificate.
pub(crate) fn http_client(
    ca_file: Option<&std::path::Path>,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut http = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} holds no CA certificate", path.display()))?;
        http = http.add_root_certificate(ca);
    }
    if let Some(t) = timeout {
        http = http.timeout(t);
    }
    http.build().context("building the HTTP client")
}

fn password(args: &AdminArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if let Ok(p) = std::env::var("BERTH_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {}: ", args.username))
            .context("reading the password");
    }
    bail!("no password: give --password-file, set BERTH_PASSWORD, or run on a terminal")
}
