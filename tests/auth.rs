//! Access control end to end: the token protocol, grants, and every way in that must stay
//! shut (each attempt gets the right status and code and changes nothing).

mod support;

use base64::Engine as _;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::cluster::berth_cli;
use support::oci::{image_manifest, sha256, OCI_MANIFEST};
use support::{client, Berth, ADMIN_PASSWORD};

const AUTH_ON: &[(&str, &str)] = &[("BERTH_AUTH__ENABLED", "true")];

fn start() -> Berth {
    Berth::start_opts(&[], AUTH_ON)
}

async fn admin_post(b: &Berth, path: &str, body: Value) -> StatusCode {
    client()
        .post(b.at(&format!("/api/v0/{path}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn add_user(b: &Berth, name: &str) {
    let status = admin_post(
        b,
        "users",
        json!({"name": name, "password": format!("{name}-password")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

/// A token from the GET form of the token endpoint (`user` None: anonymous).
async fn token(c: &Client, base: &str, user: Option<&str>, scopes: &[&str]) -> Value {
    let mut req = c
        .get(format!("{base}/auth/token"))
        .query(&[("service", "berth")]);
    for s in scopes {
        req = req.query(&[("scope", s)]);
    }
    if let Some(u) = user {
        req = req.basic_auth(u, Some(format!("{u}-password")));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "token for {user:?}");
    res.json().await.unwrap()
}

async fn bearer(c: &Client, base: &str, user: Option<&str>, scopes: &[&str]) -> String {
    token(c, base, user, scopes).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Pushes a one-layer image with `tok`; answers the manifest PUT's status.
async fn push(c: &Client, base: &str, tok: &str, repo: &str, tag: &str) -> StatusCode {
    let config = format!("{{\"repo\":\"{repo}\"}}").into_bytes();
    for blob in [&config[..], b"layer"] {
        let res = c
            .post(format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(blob)
            ))
            .bearer_auth(tok)
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        if res.status() != StatusCode::CREATED {
            return res.status();
        }
    }
    c.put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .bearer_auth(tok)
        .header("content-type", OCI_MANIFEST)
        .body(image_manifest(&config, &[b"layer"]))
        .send()
        .await
        .unwrap()
        .status()
}

async fn error_code(res: reqwest::Response) -> String {
    let body: Value = res.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_token_protocol_challenges_grants_and_opens_exactly_what_it_granted() {
    let b = start();
    let c = client();
    add_user(&b, "alice").await;
    add_user(&b, "bob").await;

    // No credentials: a challenge naming the realm, service and scope.
    let res = c.get(b.at("/v2/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(r#"Bearer realm="{}/auth/token",service="berth""#, b.url)
    );
    assert_eq!(
        res.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(error_code(res).await, "UNAUTHORIZED");
    let res = c.get(b.at("/v2/alice/app/tags/list")).send().await.unwrap();
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .ends_with(r#"scope="repository:alice/app:pull""#));

    // Any valid token opens /v2/; alice owns alice/*.
    let t = token(
        &c,
        &b.url,
        Some("alice"),
        &["repository:alice/app:pull,push"],
    )
    .await;
    assert_eq!(t["expires_in"], 300);
    assert!(t["issued_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(t["token"], t["access_token"]);
    let tok = t["token"].as_str().unwrap();
    assert_eq!(
        c.get(b.at("/v2/"))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        push(&c, &b.url, tok, "alice/app", "v1").await,
        StatusCode::CREATED
    );
    let res = c
        .get(b.at("/v2/alice/app/manifests/v1"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The same token on another repository: insufficient scope, DENIED, nothing written.
    let res = c
        .post(b.at("/v2/bob/app/blobs/uploads/"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains(r#"error="insufficient_scope""#));
    assert_eq!(error_code(res).await, "DENIED");

    // Bob asks for alice/app: the token endpoint grants nothing; the registry refuses.
    let t = token(&c, &b.url, Some("bob"), &["repository:alice/app:pull,push"]).await;
    assert_eq!(t["scope"], "");
    let bob = t["token"].as_str().unwrap();
    let res = c
        .get(b.at("/v2/alice/app/manifests/v1"))
        .bearer_auth(bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A read grant gives pull only: pushing is DENIED.
    assert_eq!(
        admin_post(
            &b,
            "grants",
            json!({"subject": "user:bob", "target": "repository:alice/app", "role": "read"})
        )
        .await,
        StatusCode::OK
    );
    let bob = bearer(&c, &b.url, Some("bob"), &["repository:alice/app:pull,push"]).await;
    let res = c
        .get(b.at("/v2/alice/app/manifests/v1"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        push(&c, &b.url, &bob, "alice/app", "bob-was-here").await,
        StatusCode::UNAUTHORIZED
    );
    // read-write: push but never delete.
    admin_post(
        &b,
        "grants",
        json!({"subject": "user:bob", "target": "repository:alice/app", "role": "read-write"}),
    )
    .await;
    let bob = bearer(
        &c,
        &b.url,
        Some("bob"),
        &["repository:alice/app:pull,push,delete"],
    )
    .await;
    assert_eq!(
        push(&c, &b.url, &bob, "alice/app", "v2").await,
        StatusCode::CREATED
    );
    let res = c
        .delete(b.at("/v2/alice/app/manifests/v2"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "DENIED");
    let res = c
        .get(b.at("/v2/alice/app/manifests/v2"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the refused delete changed nothing"
    );

    // Catalog: administrators and users see what they may pull.
    let admin = bearer_admin(&c, &b.url, &["registry:catalog:*"]).await;
    let all: Value = c
        .get(b.at("/v2/_catalog"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["repositories"], json!(["alice/app"]));
    let anon = bearer(&c, &b.url, None, &["registry:catalog:*"]).await;
    let res = c
        .get(b.at("/v2/_catalog"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "anonymous gets no catalog"
    );
    for path in [
        "/v2/_catalog/",
        "/v2/../v2/_catalog",
        "/v2/_catalog/../_catalog",
    ] {
        let res = c.get(b.at(path)).send().await.unwrap();
        assert_ne!(res.status(), StatusCode::OK, "{path}");
        let text = res.text().await.unwrap();
        assert!(!text.contains("alice/app"), "{path}: {text}");
    }
}

async fn bearer_admin(c: &Client, base: &str, scopes: &[&str]) -> String {
    let mut req = c
        .get(format!("{base}/auth/token"))
        .basic_auth("admin", Some(ADMIN_PASSWORD));
    for s in scopes {
        req = req.query(&[("scope", s)]);
    }
    let t: Value = req.send().await.unwrap().json().await.unwrap();
    t["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forged_expired_foreign_and_stale_tokens_are_refused() {
    let b = start();
    let c = client();
    add_user(&b, "alice").await;
    let tok = bearer(
        &c,
        &b.url,
        Some("alice"),
        &["repository:alice/app:pull,push,delete"],
    )
    .await;
    assert_eq!(
        push(&c, &b.url, &tok, "alice/app", "v1").await,
        StatusCode::CREATED
    );

    let parts: Vec<&str> = tok.split('.').collect();
    let b64 = |v: &Value| base64url(&serde_json::to_vec(v).unwrap());
    let header: Value = serde_json::from_slice(&unbase64url(parts[0])).unwrap();
    let mut claims: Value = serde_json::from_slice(&unbase64url(parts[1])).unwrap();
    claims["access"] =
        json!([{"type": "repository", "name": "other/app", "actions": ["pull", "push"]}]);
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let mut foreign_kid = header.clone();
    foreign_kid["kid"] = json!("0000000000000000");
    let mut flipped = parts[2].as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let forged = [
        format!("{}.{}.{}", parts[0], b64(&claims), parts[2]),
        format!("{}.{}.", b64(&none_header), b64(&claims)),
        format!("{}.{}.{}", b64(&foreign_kid), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(flipped).unwrap()
        ),
        "not-a-token".to_owned(),
    ];
    for bad in &forged {
        let res = c
            .get(b.at("/v2/alice/app/manifests/v1"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#));
        let res = c
            .put(b.at("/v2/other/app/manifests/x"))
            .bearer_auth(bad)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }

    // A token minted before its repository was deleted does not open the new one.
    let status = client()
        .delete(b.at("/api/v0/repositories/alice/app"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let res = c
        .get(b.at("/v2/alice/app/manifests/v1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A second later, a new token works on the re-created repository.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = bearer(
        &c,
        &b.url,
        Some("alice"),
        &["repository:alice/app:pull,push"],
    )
    .await;
    assert_eq!(
        push(&c, &b.url, &fresh, "alice/app", "v1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push(&c, &b.url, &tok, "alice/app", "old").await,
        StatusCode::UNAUTHORIZED
    );
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unbase64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn logins_refresh_tokens_and_the_throttle() {
    let b = start();
    let c = client();
    add_user(&b, "carol").await;

    // OAuth2 POST with a password and offline access: a refresh token.
    let res = c
        .post(b.at("/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", "carol-password"),
            ("service", "berth"),
            ("client_id", "test"),
            ("access_type", "offline"),
            (
                "scope",
                "repository:carol/app:pull,push repository:carol/other:pull",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let t: Value = res.json().await.unwrap();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        t["scope"],
        "repository:carol/app:pull,push repository:carol/other:pull"
    );
    // The refresh token is not an access token.
    let res = c
        .get(b.at("/v2/"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let exchange = |scope: &'static str| {
        let c = c.clone();
        let url = b.at("/auth/token");
        let refresh = refresh.clone();
        async move {
            c.post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("service", "berth"),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = exchange("repository:carol/app:pull").await;
    assert_eq!(res.status(), StatusCode::OK);
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["refresh_token"].as_str(), Some(refresh.as_str()));

    // Deleting the user kills their refresh token.
    let status = client()
        .delete(b.at("/api/v0/users/carol"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        exchange("repository:carol/app:pull").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Wrong passwords: 401, then 429 with Retry-After; the account is slowed down.
    add_user(&b, "dave").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = c
            .get(b.at("/auth/token"))
            .basic_auth("dave", Some("wrong"))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            assert_eq!(error_code(res).await, "TOOMANYREQUESTS");
            statuses.push(429);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let res = c
        .get(b.at("/auth/token"))
        .basic_auth("dave", Some("dave-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );

    // Secrets never reach the log.
    let log = b.log_text();
    for secret in [
        "carol-password",
        "dave-password",
        "wrong",
        &refresh[..40],
        ADMIN_PASSWORD,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
async fn organizations_teams_public_repositories_and_upload_ownership() {
    let b = start();
    let c = client();
    for u in ["erin", "frank"] {
        add_user(&b, u).await;
    }
    let url = b.url.clone();
    for args in [
        vec!["org", "--url", &url, "add", "acme"],
        vec!["team", "--url", &url, "add", "acme", "devs"],
        vec!["team", "--url", &url, "add-member", "acme", "devs", "erin"],
        vec![
            "grant",
            "--url",
            &url,
            "add",
            "team:acme/devs",
            "namespace:acme",
            "read-write",
        ],
        vec!["repo", "--url", &url, "add", "acme/site", "--public"],
    ] {
        let (ok, out, err) = berth_cli(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(!out.is_empty());
    }
    let (ok, out, _) = berth_cli(&["team", "--url", &url, "list", "acme"]);
    assert!(ok);
    let teams: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(teams["teams"][0]["members"], json!(["erin"]));

    // A team member pushes into the organization's namespace (creating the repository).
    let erin = bearer(&c, &url, Some("erin"), &["repository:acme/app:pull,push"]).await;
    assert_eq!(
        push(&c, &url, &erin, "acme/app", "v1").await,
        StatusCode::CREATED
    );
    let erin_site = bearer(&c, &url, Some("erin"), &["repository:acme/site:pull,push"]).await;
    assert_eq!(
        push(&c, &url, &erin_site, "acme/site", "v1").await,
        StatusCode::CREATED
    );
    // Frank is in no team: nothing private, but the public repository.
    let frank = bearer(&c, &url, Some("frank"), &["repository:acme/app:pull"]).await;
    let res = c
        .get(c_url(&url, "/v2/acme/app/manifests/v1"))
        .bearer_auth(&frank)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let anon = bearer(&c, &url, None, &["repository:acme/site:pull,push"]).await;
    let res = c
        .get(c_url(&url, "/v2/acme/site/manifests/v1"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "public repositories pull anonymously"
    );
    assert_eq!(
        push(&c, &url, &anon, "acme/site", "x").await,
        StatusCode::UNAUTHORIZED
    );
    let (ok, _, err) = berth_cli(&["repo", "--url", &url, "visibility", "acme/site", "private"]);
    assert!(ok, "{err}");
    let anon = bearer(&c, &url, None, &["repository:acme/site:pull"]).await;
    let res = c
        .get(c_url(&url, "/v2/acme/site/manifests/v1"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // An upload session belongs to who started it.
    let res = c
        .post(c_url(&url, "/v2/acme/app/blobs/uploads/"))
        .bearer_auth(&erin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let (ok, _, err) = berth_cli(&[
        "grant",
        "--url",
        &url,
        "add",
        "user:frank",
        "repository:acme/app",
        "read-write",
    ]);
    assert!(ok, "{err}");
    let frank = bearer(&c, &url, Some("frank"), &["repository:acme/app:pull,push"]).await;
    let res = c
        .patch(c_url(&url, &location))
        .bearer_auth(&frank)
        .header("content-type", "application/octet-stream")
        .body("sneaky")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "BLOB_UPLOAD_UNKNOWN");
    let res = c
        .get(c_url(&url, &location))
        .bearer_auth(&erin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["range"], "0-0", "frank's bytes never landed");

    // A mount needs pull on the source: frank cannot borrow from alice-less erin/private.
    let erin_own = bearer(
        &c,
        &url,
        Some("erin"),
        &["repository:erin/secret:pull,push"],
    )
    .await;
    assert_eq!(
        push(&c, &url, &erin_own, "erin/secret", "v1").await,
        StatusCode::CREATED
    );
    let layer = sha256(b"layer");
    let res = c
        .post(c_url(
            &url,
            &format!("/v2/acme/app/blobs/uploads/?mount={layer}&from=erin/secret"),
        ))
        .bearer_auth(&frank)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "no mount without pull on the source"
    );

    // Key rotation: old tokens keep working, new ones use the new key.
    let (ok, out, err) = berth_cli(&["key", "--url", &url, "rotate"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("new signing key"));
    let res = c
        .get(c_url(&url, "/v2/acme/app/manifests/v1"))
        .bearer_auth(&erin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, keys, _) = berth_cli(&["key", "--url", &url, "list"]);
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
}

fn c_url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

/// The cluster's current signing key (kid, private PEM), read from a replica's state.db with
/// Python's sqlite3 (the test needs it to sign tokens the registry must still refuse).
fn signing_key(b: &Berth) -> Option<(String, String)> {
    let db = b.data_dir().join("raft/state.db");
    let script = "import sqlite3,sys,json\n\
        c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\n\
        print(json.dumps(c.execute('SELECT kid, private_pem FROM signing_keys ORDER BY created_at_ms DESC LIMIT 1').fetchone()))";
    let out = std::process::Command::new("python3")
        .args(["-c", script, db.to_str()?])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let row: (String, String) = serde_json::from_slice(&out.stdout).ok()?;
    Some(row)
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_signed_with_our_own_key_are_refused() {
    if !support::external_tool("python3", &["-c", "import sqlite3"]) {
        return;
    }
    let b = start();
    let c = client();
    add_user(&b, "gina").await;
    let tok = bearer(&c, &b.url, Some("gina"), &["repository:gina/app:pull,push"]).await;
    assert_eq!(
        push(&c, &b.url, &tok, "gina/app", "v1").await,
        StatusCode::CREATED
    );
    let (kid, pem) = signing_key(&b).expect("signing key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iat: u64, nbf: u64, exp: u64| berth_auth::token::Claims {
        iss: "berth".into(),
        sub: "gina".into(),
        aud: "berth".into(),
        exp,
        nbf,
        iat,
        jti: format!("t{iat}"),
        access: vec![berth_auth::scope::Scope::repository(
            "gina/app",
            [berth_auth::scope::Action::Pull],
        )],
        token_use: berth_auth::token::TokenUse::Access,
        iat_ms: None,
    };
    // A control: the same key and claims, valid now, open the repository.
    let good = berth_auth::token::sign(&claims(now, now, now + 300), &kid, &pem).unwrap();
    let res = c
        .get(b.at("/v2/gina/app/manifests/v1"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for (what, bad) in [
        ("expired", claims(now - 4000, now - 4000, now - 3000)),
        ("not yet valid", claims(now, now + 3000, now + 4000)),
        (
            "wrong audience",
            berth_auth::token::Claims {
                aud: "elsewhere".into(),
                ..claims(now, now, now + 300)
            },
        ),
        (
            "wrong issuer",
            berth_auth::token::Claims {
                iss: "elsewhere".into(),
                ..claims(now, now, now + 300)
            },
        ),
    ] {
        let t = berth_auth::token::sign(&bad, &kid, &pem).unwrap();
        let res = c
            .get(b.at("/v2/gina/app/manifests/v1"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#),
            "{what}"
        );
    }
}
