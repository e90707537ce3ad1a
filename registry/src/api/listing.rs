//! Handlers of tag lists, the catalog (end-8a/b) and referrers (end-12a/b): HTTP only.

use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use berth_auth::policy::Principal;
use berth_oci::{media_type, Digest, RepoName};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ApiError, RequestError};
use super::response::{Listing, OCI_FILTERS_APPLIED};
use crate::service::{Page, Registry};

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    n: Option<String>,
    last: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ReferrersQuery {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

/// `GET /v2/<name>/tags/list?n=&last=`.
pub async fn list_tags(
    registry: &Registry,
    repo: &RepoName,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let (n, last) = page_query(uri)?;
    let page = registry.list_tags(repo, n, last.as_deref()).await?;
    let next = next_link(&format!("/v2/{repo}/tags/list"), &page);
    Ok(Listing {
        body: json!({ "name": repo.as_str(), "tags": page.entries }),
        next,
        content_type: "application/json",
        extra: vec![],
    }
    .into_response())
}

/// `GET /v2/_catalog?n=&last=`.
/// With access control, a user sees only the repositories they may pull (a page may then
/// hold fewer than `n`; `Link` still follows the unfiltered order).
pub async fn list_catalog(
    registry: &Registry,
    uri: &Uri,
    principal: Option<&Principal>,
) -> Result<Response, ApiError> {
    let (n, last) = page_query(uri)?;
    let mut page = registry.list_repositories(n, last.as_deref()).await?;
    let next = next_link("/v2/_catalog", &page);
    if let Some(principal) = principal {
        if !matches!(principal, Principal::User { admin: true, .. }) {
            let mut visible = Vec::with_capacity(page.entries.len());
            for repo in page.entries {
                if registry.may_pull(principal, &repo).await? {
                    visible.push(repo);
                }
            }
            page.entries = visible;
        }
    }
    Ok(Listing {
        body: json!({ "repositories": page.entries }),
        next,
        content_type: "application/json",
        extra: vec![],
    }
    .into_response())
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: an OCI image index of referrers.
pub async fn list_referrers(
    registry: &Registry,
    repo: &RepoName,
    subject: &Digest,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let query: ReferrersQuery = match uri.query() {
        None => ReferrersQuery::default(),
        Some(_) => axum::extract::Query::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|_| RequestError::BadQuery("artifactType"))?,
    };
    let found = registry
        .list_referrers(repo, subject, query.artifact_type.as_deref())
        .await?;
    let manifests: Vec<Value> = found
        .referrers
        .into_iter()
        .map(|r| {
            let mut d = Map::new();
            d.insert("mediaType".into(), json!(r.media_type));
            d.insert("digest".into(), json!(r.digest.to_string()));
            d.insert("size".into(), json!(r.size));
            if let Some(t) = r.artifact_type {
                d.insert("artifactType".into(), json!(t));
            }
            if !r.annotations.is_empty() {
                d.insert("annotations".into(), json!(r.annotations));
            }
            Value::Object(d)
        })
        .collect();
    let extra = if found.filtered {
        vec![(OCI_FILTERS_APPLIED, "artifactType".to_owned())]
    } else {
        vec![]
    };
    Ok(Listing {
        body: json!({ "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests }),
        next: None,
        content_type: media_type::OCI_INDEX,
        extra,
    }
    .into_response())
}

fn page_query(uri: &Uri) -> Result<(Option<u32>, Option<String>), RequestError> {
    let query: PageQuery = match uri.query() {
        None => PageQuery::default(),
        Some(_) => axum::extract::Query::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|_| RequestError::BadQuery("n"))?,
    };
    let n = match query.n.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| RequestError::BadQuery("n"))?,
        ),
    };
    Ok((n, query.last.filter(|l| !l.is_empty())))
}

/// The path of the page after `page`, if there is one. Tags and repository names contain
/// only URL-safe characters, so no encoding is needed.
fn next_link(path: &str, page: &Page) -> Option<String> {
    let n = page.next?;
    let last = page.entries.last()?;
    Some(format!("{path}?n={n}&last={last}"))
}
