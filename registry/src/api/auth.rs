//! Access control of `/v2/`: which actions a request needs, the bearer token that must grant
//! them, and the `WWW-Authenticate` challenge that tells a client where to get one.
//!
//! | request                                    | needs                               |
//! |--------------------------------------------|-------------------------------------|
//! | `GET /v2/`                                 | any valid access token              |
//! | `GET /v2/_catalog`                         | `registry:catalog:*`                |
//! | GET/HEAD on a repository                   | `pull`                              |
//! | POST/PUT/PATCH, and cancelling an upload   | `pull,push`                         |
//! | DELETE of a manifest, tag or blob          | `delete` (never implied by push)    |
//! | a cross-repository mount                   | also `pull` on `from` (else no mount) |

use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use berth_auth::policy::Principal;
use berth_auth::scope::{Action, Scope};
use berth_auth::token::Claims;
use berth_oci::{ErrorCode, RepoName};

use super::error::ApiError;
use super::route::Route;
use crate::app::App;
use crate::service::AccessDenied;

/// What the caller may do, once let in.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The verified token; `None` when access control is off.
    claims: Option<Claims>,
}

impl Access {
    /// The user name to own upload sessions (`None`: anonymous or access control off).
    pub fn owner(&self) -> Option<&str> {
        self.claims
            .as_ref()
            .map(|c| c.sub.as_str())
            .filter(|s| !s.is_empty())
    }

    /// Whether the token grants `pull` on `repo` (always, with access control off).
    pub fn may_pull(&self, repo: &RepoName) -> bool {
        match &self.claims {
            None => true,
            Some(c) => c.access.iter().any(|s| {
                s.is_repository() && s.name == repo.as_str() && s.actions.contains(&Action::Pull)
            }),
        }
    }

    /// The principal for filtering listings: `None` when access control is off.
    pub async fn principal(&self, app: &App) -> Option<Principal> {
        let claims = self.claims.as_ref()?;
        Some(
            app.registry()
                .principal_of(claims)
                .await
                .unwrap_or(Principal::Anonymous),
        )
    }
}

/// The scope a request needs (for the challenge) and whether it is the catalog.
fn needed(method: &Method, route: &Route) -> (Option<(RepoName, Vec<Action>)>, bool) {
    let repo_actions = |repo: &RepoName, actions: &[Action]| Some((repo.clone(), actions.to_vec()));
    let write = [Action::Pull, Action::Push];
    match route {
        Route::Base => (None, false),
        Route::Catalog => (None, true),
        Route::Manifest { repo, .. } | Route::Blob { repo, .. } => match *method {
            Method::DELETE => (repo_actions(repo, &[Action::Delete]), false),
            Method::GET | Method::HEAD => (repo_actions(repo, &[Action::Pull]), false),
            _ => (repo_actions(repo, &write), false),
        },
        Route::UploadStart { repo } | Route::Upload { repo, .. } => match *method {
            Method::GET | Method::HEAD => (repo_actions(repo, &[Action::Pull]), false),
            _ => (repo_actions(repo, &write), false),
        },
        Route::Tags { repo } | Route::Referrers { repo, .. } => {
            (repo_actions(repo, &[Action::Pull]), false)
        }
    }
}

/// Lets the request in or answers the challenge.
///
/// # Errors
/// A 401 with `WWW-Authenticate: Bearer ...` (UNAUTHORIZED without or with a bad token,
/// DENIED when the token lacks the action).
pub async fn authorize(
    app: &App,
    method: &Method,
    route: &Route,
    parts: &Parts,
) -> Result<Access, ApiError> {
    let registry = app.registry();
    if !registry.access_settings().enabled {
        return Ok(Access::default());
    }
    let (repo_need, catalog) = needed(method, route);
    let token = bearer(parts);
    let (repo, actions) = match &repo_need {
        Some((repo, actions)) => (Some(repo), actions.as_slice()),
        None => (None, &[][..]),
    };
    match registry.authorize(token, repo, actions, catalog).await {
        Ok(claims) => Ok(Access {
            claims: Some(claims),
        }),
        Err(denied) => {
            let scope = if catalog {
                Some(Scope::catalog())
            } else {
                repo_need.map(|(repo, actions)| Scope::repository(repo.as_str(), actions))
            };
            Err(challenge(app, parts, scope.as_ref(), &denied))
        }
    }
}

/// The `Authorization: Bearer` token, if any.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The 401 that sends a client to the token endpoint.
fn challenge(app: &App, parts: &Parts, scope: Option<&Scope>, denied: &AccessDenied) -> ApiError {
    let settings = app.registry().access_settings();
    let realm = app
        .realm()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/auth/token", external_base(parts, app.scheme())));
    let mut value = format!(r#"Bearer realm="{realm}",service="{}""#, settings.service);
    if let Some(scope) = scope {
        value.push_str(&format!(r#",scope="{scope}""#));
    }
    let (code, error) = match denied {
        AccessDenied::Missing => (ErrorCode::Unauthorized, None),
        AccessDenied::Invalid => (ErrorCode::Unauthorized, Some("invalid_token")),
        AccessDenied::InsufficientScope => (ErrorCode::Denied, Some("insufficient_scope")),
    };
    if let Some(error) = error {
        value.push_str(&format!(r#",error="{error}""#));
    }
    ApiError::new(code)
        .status(StatusCode::UNAUTHORIZED)
        .header(WWW_AUTHENTICATE, value)
}

/// `scheme://host[:port]` as the client addressed us (`scheme` is this listener's), honouring
/// a proxy's `X-Forwarded-Proto` / `X-Forwarded-Host`.
pub fn external_base(parts: &Parts, scheme: &str) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto").unwrap_or_else(|| scheme.to_owned());
    let host = header("x-forwarded-host")
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn deletes_need_their_own_action_and_writes_need_pull_and_push() {
        let m = Route::Manifest {
            repo: repo("a/b"),
            reference: berth_oci::Reference::parse("v1").unwrap(),
        };
        assert_eq!(
            needed(&Method::DELETE, &m).0.unwrap().1,
            vec![Action::Delete]
        );
        assert_eq!(
            needed(&Method::PUT, &m).0.unwrap().1,
            vec![Action::Pull, Action::Push]
        );
        assert_eq!(needed(&Method::HEAD, &m).0.unwrap().1, vec![Action::Pull]);
        assert!(needed(&Method::GET, &Route::Catalog).1);
        assert_eq!(needed(&Method::GET, &Route::Base), (None, false));
    }

    #[test]
    fn the_external_base_follows_the_proxy_headers() {
        let (parts, ()) = axum::http::Request::get("/v2/")
            .header("host", "reg.example:5000")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(external_base(&parts, "http"), "http://reg.example:5000");
        assert_eq!(external_base(&parts, "https"), "https://reg.example:5000");
        let (parts, ()) = axum::http::Request::get("/v2/")
            .header("host", "10.0.0.1:5000")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "registry.example")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(external_base(&parts, "http"), "https://registry.example");
    }
}
