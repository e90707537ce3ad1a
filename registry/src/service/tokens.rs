//! Tokens: logging in (password or refresh token), granting scopes by the grants in the
//! metadata, signing access and refresh tokens with the cluster's key, and checking a
//! presented token against what a request needs. The decisions are `berth_auth`'s; this
//! module feeds them the facts.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use berth_auth::policy::{self, Principal, RepositoryFacts, Role};
use berth_auth::scope::{Action, Scope};
use berth_auth::throttle::LoginThrottle;
use berth_auth::token::{self, Claims, KeySet, TokenError, TokenUse};
use berth_oci::RepoName;
use berth_raft::{AccessCommand, MetaCommand};

use super::{now_ms, Error, Registry, Result};

/// Access-control settings (from the configuration).
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Whether access control is on.
    pub enabled: bool,
    /// `service` / `aud`.
    pub service: String,
    /// `iss`.
    pub issuer: String,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            service: "berth".to_owned(),
            issuer: "berth".to_owned(),
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Shared access state: settings, the loaded keys, the login throttle.
#[derive(Debug, Default)]
pub(crate) struct AccessState {
    pub(crate) settings: AccessSettings,
    keys: RwLock<Option<Arc<LoadedKeys>>>,
    throttle: LoginThrottle,
}

impl AccessState {
    pub(crate) fn new(settings: AccessSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }
}

#[derive(Debug)]
struct LoadedKeys {
    set: KeySet,
    /// The newest key: `(kid, private PEM)`.
    signer: Option<(String, String)>,
}

/// Tokens answered by the token endpoint.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The access token (JWT).
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// When it was issued (seconds since the epoch).
    pub issued_at: u64,
    /// A refresh token, when an offline token was asked for.
    pub refresh_token: Option<String>,
    /// What was granted.
    pub granted: Vec<Scope>,
}

/// Why a presented token does not open a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDenied {
    /// No token.
    Missing,
    /// Malformed, forged, expired, or not ours.
    Invalid,
    /// Valid, but without the actions needed.
    InsufficientScope,
}

/// When a token was issued, in ms: its `iat_ms`, else `iat` (second resolution).
fn issued_ms(claims: &Claims) -> i64 {
    let ms = claims.iat_ms.unwrap_or(claims.iat.saturating_mul(1000));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}

impl Registry {
    /// The access-control settings.
    pub fn access_settings(&self) -> &AccessSettings {
        &self.access.settings
    }

    /// Makes the first signing key of a new cluster (safe to call at every start).
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a quorum.
    pub async fn ensure_signing_key(&self) -> Result<()> {
        if !self.meta.reader().signing_keys().await?.is_empty() {
            return Ok(());
        }
        self.meta.read_barrier().await?;
        if self.meta.reader().signing_keys().await?.is_empty() {
            self.rotate_signing_key().await?;
        }
        Ok(())
    }

    /// Adds a new signing key, which signs from now on; tokens signed by older keys stay
    /// valid until they expire. Answers the new key's id.
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a quorum.
    pub async fn rotate_signing_key(&self) -> Result<String> {
        let key = berth_auth::keys::generate().map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let kid = key.kid.clone();
        self.meta
            .propose(MetaCommand::Access(AccessCommand::AddSigningKey {
                kid: key.kid,
                private_pem: key.private_pem,
                public_pem: key.public_pem,
                at_ms: now_ms(),
            }))
            .await?;
        self.reload_keys().await?;
        tracing::info!(%kid, "new token-signing key: it signs from now on");
        Ok(kid)
    }

    /// The signing keys' ids and creation times, oldest first.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn signing_key_ids(&self) -> Result<Vec<(String, i64)>> {
        Ok(self
            .meta
            .reader()
            .signing_keys()
            .await?
            .into_iter()
            .map(|k| (k.kid, k.created_at_ms))
            .collect())
    }

    async fn reload_keys(&self) -> Result<Arc<LoadedKeys>> {
        let stored = self.meta.reader().signing_keys().await?;
        let loaded = Arc::new(LoadedKeys {
            set: KeySet::new(
                stored
                    .iter()
                    .map(|k| (k.kid.as_str(), k.public_pem.as_str())),
            ),
            signer: stored
                .last()
                .map(|k| (k.kid.clone(), k.private_pem.clone())),
        });
        *self.access.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The loaded keys; reloaded when `kid` is not among them (a key rotated on another
    /// replica).
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<LoadedKeys>> {
        let cached = self
            .access
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (cached, kid) {
            (Some(keys), Some(kid)) if keys.set.contains(kid) => Ok(keys),
            (Some(keys), None) if keys.signer.is_some() => Ok(keys),
            _ => self.reload_keys().await,
        }
    }

    /// Checks a user's password, slowing down repeated failures per account and per client
    /// address.
    ///
    /// # Errors
    /// [`Error::TooManyAttempts`] while locked out, [`Error::Unauthenticated`] otherwise.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal> {
        let account_key = format!("user:{username}");
        let mut keys = vec![account_key.clone()];
        if let Some(ip) = client {
            keys.push(format!("addr:{ip}"));
        }
        if let Some(wait) = self.access.throttle.check(&keys, Instant::now()) {
            return Err(Error::TooManyAttempts {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        match self.check_password(username, password).await {
            Ok(principal) => {
                self.access.throttle.succeeded(&account_key);
                Ok(principal)
            }
            Err(Error::Unauthenticated) => {
                self.access.throttle.failed(&keys, Instant::now());
                tracing::warn!(user = %username, client = ?client, "failed login");
                Err(Error::Unauthenticated)
            }
            Err(e) => Err(e),
        }
    }

    async fn check_password(&self, username: &str, password: &str) -> Result<Principal> {
        let user = self.meta.reader().user(username).await?;
        let phc = user
            .as_ref()
            .map_or_else(super::access::dummy_hash, |u| u.password_hash.clone());
        let password = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || berth_auth::password::verify(&password, &phc))
                .await
                .unwrap_or(false);
        match user {
            Some(u) if matches => Ok(Principal::User {
                name: u.name,
                admin: u.admin,
            }),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// The user a refresh token stands for, if it is still good: ours, unexpired, and its
    /// user exists, was not re-created and has not changed password since it was issued.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`].
    pub async fn login_with_refresh_token(&self, refresh_token: &str) -> Result<Principal> {
        let claims = self
            .verify_token(refresh_token)
            .await
            .map_err(|_| Error::Unauthenticated)?;
        if claims.token_use != TokenUse::Refresh || claims.sub.is_empty() {
            return Err(Error::Unauthenticated);
        }
        let user = self
            .meta
            .reader()
            .user(&claims.sub)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let issued_ms = issued_ms(&claims);
        if user.created_at_ms > issued_ms || user.password_changed_at_ms > issued_ms {
            return Err(Error::Unauthenticated);
        }
        Ok(Principal::User {
            name: user.name,
            admin: user.admin,
        })
    }

    /// Verifies a token's signature, issuer, audience and lifetime.
    pub(crate) async fn verify_token(
        &self,
        token: &str,
    ) -> std::result::Result<Claims, TokenError> {
        let kid = KeySet::kid_of(token);
        let keys = self
            .keys_for(kid.as_deref())
            .await
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let s = &self.access.settings;
        keys.set.verify(token, &s.issuer, &s.service)
    }

    /// The part of `asked` that `principal` holds.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn grant(&self, principal: &Principal, asked: &[Scope]) -> Result<Vec<Scope>> {
        let mut granted = Vec::new();
        for scope in asked {
            if scope.is_catalog() {
                if principal.name().is_some() {
                    granted.push(Scope::catalog());
                }
                continue;
            }
            if !scope.is_repository() || RepoName::parse(&scope.name).is_err() {
                continue;
            }
            let facts = self.repository_facts(principal, &scope.name).await?;
            let actions = policy::allowed_actions(principal, &scope.name, &facts, &scope.actions);
            if !actions.is_empty() {
                granted.push(Scope::repository(&scope.name, actions));
            }
        }
        Ok(granted)
    }

    async fn repository_facts(&self, principal: &Principal, repo: &str) -> Result<RepositoryFacts> {
        let reader = self.meta.reader();
        let record = reader.repository(repo).await?;
        let (mut repository_roles, mut namespace_roles) = (Vec::new(), Vec::new());
        if let Some(user) = principal.name() {
            let repo_target = format!("repository:{repo}");
            let ns_target = format!("namespace:{}", policy::namespace_of(repo));
            for (target, role) in reader
                .roles_of(user, &[repo_target.clone(), ns_target])
                .await?
            {
                let Some(role) = Role::parse(&role) else {
                    continue;
                };
                if target == repo_target {
                    repository_roles.push(role);
                } else {
                    namespace_roles.push(role);
                }
            }
        }
        Ok(RepositoryFacts {
            exists: record.is_some(),
            public: record.as_ref().is_some_and(|r| r.public),
            repository_roles,
            namespace_roles,
        })
    }

    /// Signs an access token for `granted` (and a refresh token when `offline`).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the cluster has no signing key yet.
    pub async fn issue_tokens(
        &self,
        principal: &Principal,
        granted: Vec<Scope>,
        offline: bool,
    ) -> Result<IssuedTokens> {
        let keys = self.keys_for(None).await?;
        let (kid, private_pem) = keys.signer.clone().ok_or(Error::Unavailable)?;
        let s = &self.access.settings;
        let now_ms = u64::try_from(now_ms()).unwrap_or(0);
        let now = now_ms / 1000;
        let sub = principal.name().unwrap_or_default().to_owned();
        let claims = |token_use, ttl: Duration, access| Claims {
            iss: s.issuer.clone(),
            sub: sub.clone(),
            aud: s.service.clone(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: random_id(),
            access,
            token_use,
            iat_ms: Some(now_ms),
        };
        let sign = |c: &Claims| {
            token::sign(c, &kid, &private_pem).map_err(|e| Error::InvalidRequest(e.to_string()))
        };
        let access_token = sign(&claims(TokenUse::Access, s.access_ttl, granted.clone()))?;
        let refresh_token = if offline && principal.name().is_some() {
            Some(sign(&claims(TokenUse::Refresh, s.refresh_ttl, Vec::new()))?)
        } else {
            None
        };
        Ok(IssuedTokens {
            access_token,
            expires_in: s.access_ttl.as_secs(),
            issued_at: now,
            refresh_token,
            granted,
        })
    }

    /// Checks that the bearer `token` allows `needed` on `repo` (or, with no repository, is
    /// any valid access token; with `catalog`, holds the catalog scope). Answers its claims.
    ///
    /// # Errors
    /// Why it does not: missing, invalid, or insufficient.
    pub async fn authorize(
        &self,
        token: Option<&str>,
        repo: Option<&RepoName>,
        needed: &[Action],
        catalog: bool,
    ) -> std::result::Result<Claims, AccessDenied> {
        let token = token.ok_or(AccessDenied::Missing)?;
        let claims = self
            .verify_token(token)
            .await
            .map_err(|_| AccessDenied::Invalid)?;
        if claims.token_use != TokenUse::Access {
            return Err(AccessDenied::Invalid);
        }
        if catalog && !claims.access.iter().any(Scope::is_catalog) {
            return Err(AccessDenied::InsufficientScope);
        }
        if let Some(repo) = repo {
            let held: BTreeSet<Action> = claims
                .access
                .iter()
                .filter(|s| s.is_repository() && s.name == repo.as_str())
                .flat_map(|s| s.actions.iter().copied())
                .collect();
            if !needed.iter().all(|a| held.contains(a)) {
                return Err(AccessDenied::InsufficientScope);
            }
            // A token from before the repository was deleted does not open its successor.
            let deleted = self
                .meta
                .reader()
                .repository_deleted_at(repo.as_str())
                .await
                .map_err(|_| AccessDenied::Invalid)?;
            if deleted.is_some_and(|d| d >= issued_ms(&claims)) {
                return Err(AccessDenied::InsufficientScope);
            }
        }
        Ok(claims)
    }

    /// Whether `principal` may pull `repo` (catalog filtering).
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn may_pull(&self, principal: &Principal, repo: &str) -> Result<bool> {
        let facts = self.repository_facts(principal, repo).await?;
        Ok(
            !policy::allowed_actions(principal, repo, &facts, &BTreeSet::from([Action::Pull]))
                .is_empty(),
        )
    }

    /// The principal a verified token's subject names.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn principal_of(&self, claims: &Claims) -> Result<Principal> {
        if claims.sub.is_empty() {
            return Ok(Principal::Anonymous);
        }
        Ok(match self.meta.reader().user(&claims.sub).await? {
            Some(u) => Principal::User {
                name: u.name,
                admin: u.admin,
            },
            None => Principal::Anonymous,
        })
    }
}
