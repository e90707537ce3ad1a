//! Backup and restore end to end, with real `berth` processes: a three-replica cluster
//! backed up while a client keeps pushing, destroyed (data directories gone, blob storage
//! kept), restored and joined by two new replicas, then checked image by image and login by
//! login; and every way a restore must refuse and change nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::SecretString;
use reqwest::StatusCode;
use support::cluster::{berth_cli, Cluster};
use support::oci::{assert_tag, push_image};
use support::{client, external_tool, run_cmd, run_ok, Berth, ADMIN_PASSWORD};

/// Clusters and the Docker engine take both cores: one test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const PASSPHRASE: &str = "a passphrase for the test backups";
const LONG: Duration = Duration::from_secs(600);

/// What the restored cluster must have, gathered while the original one is filled. When
/// users, teams and grants arrive, their expectations go here too, with a check each below.
#[derive(Default)]
struct Expected {
    /// (repository, tag, manifest digest) pushed over HTTP before the backup.
    http_images: Vec<(String, String, String)>,
    /// Images pushed by the Docker engine before the backup.
    docker_images: Vec<DockerImage>,
    /// (user, password) that must still log in to the admin API.
    logins: Vec<(String, String)>,
}

struct DockerImage {
    /// Repository and tag, without the host (`team/web:1.0`).
    name: String,
    /// The engine's image id.
    id: String,
    /// The manifest digest the registry gave it.
    digest: String,
}

fn write_passphrase(dir: &Path, passphrase: &str) -> PathBuf {
    let path = dir.join("passphrase");
    std::fs::write(&path, format!("{passphrase}\n")).unwrap();
    path
}

/// `berth ARGS` with stdin and stdout redirected to files, the test administrator's password
/// in `BERTH_PASSWORD`; answers (success, stderr). Bounded in time.
fn berth_redirected(args: &[&str], stdin: Option<&Path>, stdout: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .stdin(match stdin {
            Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
            None => Stdio::null(),
        })
        .stdout(match stdout {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::piped(),
        })
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn berth");
    let deadline = Instant::now() + LONG;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "berth {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `berth backup --url URL EXTRA > out`.
fn backup(url: &str, extra: &[&str], out: &Path) -> (bool, String) {
    let mut args = vec!["backup", "--url", url];
    args.extend_from_slice(extra);
    berth_redirected(&args, None, Some(out))
}

/// `berth restore EXTRA < input`; answers (success, stdout and stderr).
fn restore(input: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["restore"];
    args.extend_from_slice(extra);
    berth_redirected(&args, Some(input), None)
}

/// GETs `repo:tag` and every blob its manifest names from `base`, checking each digest.
async fn pull_over_http(base: &str, repo: &str, tag: &str) {
    let res = client()
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", support::oci::ANY_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{repo}:{tag}");
    let digest = res.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.bytes().await.unwrap();
    assert_eq!(support::oci::sha256(&body), digest, "{repo}:{tag}");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for blob in std::iter::once(&manifest["config"]).chain(layers) {
        let blob_digest = blob["digest"].as_str().unwrap();
        let res = client()
            .get(format!("{base}/v2/{repo}/blobs/{blob_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{repo}@{blob_digest}");
        let bytes = res.bytes().await.unwrap();
        assert_eq!(
            support::oci::sha256(&bytes),
            blob_digest,
            "{repo}@{blob_digest}"
        );
    }
}

async fn admin_json(base: &str, path: &str) -> serde_json::Value {
    let res = client()
        .get(format!("{base}/api/v0/{path}"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.json().await.unwrap()
}

async fn admin_status(base: &str, user: &str, password: &str) -> StatusCode {
    client()
        .get(format!("{base}/api/v0/replicas"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
}

// --- the Docker engine (as in tests/docker.rs) ---

fn docker(args: &[&str]) -> String {
    run_ok("docker", args, LONG)
}

fn port(node: &Berth) -> &str {
    node.addr.rsplit_once(':').unwrap().1
}

/// Pseudo-random bytes that no compression helps with.
fn random_file(path: &Path, len: usize, seed: u64) {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ seed ^ u64::from(std::process::id());
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// `docker build` of `FROM <from>` plus one `COPY` per file, with the classic builder.
fn build(dir: &Path, tag: &str, from: &str, files: &[&str]) {
    let mut dockerfile = format!("FROM {from}\n");
    for f in files {
        dockerfile.push_str(&format!("COPY {f} /{f}\n"));
    }
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag, "."])
        .current_dir(dir)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_owned()
}

/// The manifest digest the engine recorded for `host/name` (`sha256:...`).
fn repo_digest(host: &str, name: &str) -> String {
    let reference = format!("{host}/{name}");
    let repo = reference.rsplit_once(':').unwrap().0;
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        &reference,
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("no repo digest for {reference} in {out}"))
        .to_owned()
}

fn remove_images(refs: &[String]) {
    for r in refs {
        let _ = run_cmd("docker", &["rmi", "-f", r], LONG);
    }
}

/// Builds two images (the second on the first) and pushes them through two replicas.
fn push_docker_images(cluster: &Cluster, work: &Path) -> Vec<DockerImage> {
    random_file(&work.join("big.bin"), 2 * 1024 * 1024, 1);
    random_file(&work.join("small.bin"), 40 * 1024, 2);
    std::fs::write(work.join("extra.txt"), "only in the second image\n").unwrap();
    let images = [
        (
            "team/web:1.0",
            &cluster.nodes[0],
            "scratch",
            vec!["big.bin", "small.bin"],
        ),
        ("team/app/api:2.0", &cluster.nodes[1], "", vec!["extra.txt"]),
    ];
    let mut pushed = Vec::new();
    let mut base = String::new();
    for (name, node, from, files) in images {
        let host = format!("localhost:{}", port(node));
        let reference = format!("{host}/{name}");
        let from = if from.is_empty() {
            base.clone()
        } else {
            from.to_owned()
        };
        build(work, &reference, &from, &files);
        docker(&["push", &reference]);
        pushed.push(DockerImage {
            name: name.to_owned(),
            id: image_id(&reference),
            digest: repo_digest(&host, name),
        });
        base = reference;
    }
    pushed
}

/// One push of the client that keeps pushing during the backup.
struct Push {
    tag: String,
    digest: String,
    started: Instant,
    finished: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backed_up_under_load_is_restored_and_joined_with_all_its_data() {
    let _serial = SERIAL.lock().await;
    let docker_works = external_tool("docker", &["info"]);
    let work = tempfile::tempdir().unwrap();
    let passphrase = write_passphrase(work.path(), PASSPHRASE);
    let file = work.path().join("berth.bkp");
    let mut cluster = Cluster::start(3);
    let c = client();
    let mut expected = Expected {
        logins: vec![("admin".to_owned(), ADMIN_PASSWORD.to_owned())],
        ..Expected::default()
    };

    // Images through every replica, by HTTP and (when it is here) by the Docker engine.
    for i in 0..6 {
        let node = &cluster.nodes[i % 3];
        let (repo, tag) = (format!("team/http{}", i % 2), format!("v{i}"));
        let digest = push_image(&c, &node.url, &repo, &tag, &format!("http {i}")).await;
        expected.http_images.push((repo, tag, digest));
    }
    if docker_works {
        expected.docker_images = push_docker_images(&cluster, work.path());
    }
    // Users, an organization with a team and grants, and an administrator's bearer token
    // issued before the backup: all must come back, and the token must still verify.
    let url0 = cluster.nodes[0].url.clone();
    for args in [
        vec!["org", "--url", &url0, "add", "acme"],
        vec!["team", "--url", &url0, "add", "acme", "devs"],
    ] {
        let (ok, _, err) = berth_cli(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = support::cluster::berth_cli_env(
        &["user", "--url", &url0, "add", "alice"],
        &[("BERTH_NEW_PASSWORD", "alice-password")],
    );
    assert!(ok, "{err}");
    for args in [
        vec![
            "team",
            "--url",
            &url0,
            "add-member",
            "acme",
            "devs",
            "alice",
        ],
        vec![
            "grant",
            "--url",
            &url0,
            "add",
            "team:acme/devs",
            "namespace:acme",
            "read-write",
        ],
        vec![
            "grant",
            "--url",
            &url0,
            "add",
            "user:alice",
            "repository:team/http0",
            "read",
        ],
    ] {
        let (ok, _, err) = berth_cli(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let grants_before = admin_json(&url0, "grants").await;
    let teams_before = admin_json(&url0, "orgs/acme/teams").await;
    let admin_token: serde_json::Value = c
        .get(format!("{url0}/auth/token"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_token = admin_token["token"].as_str().unwrap().to_owned();

    // A token of the old cluster, valid for ever there: it must admit nobody after a restore.
    let (ok, old_token, err) =
        berth_cli(&["join-token", "--url", &cluster.nodes[0].url, "--ttl", "0"]);
    assert!(ok, "{err}");
    let old_token = old_token.trim().to_owned();

    // A client keeps pushing through replica 3 while replica 2 takes the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let pusher = {
        let (stop, count, url) = (
            Arc::clone(&stop),
            Arc::clone(&count),
            cluster.nodes[2].url.clone(),
        );
        tokio::spawn(async move {
            let c = client();
            let mut pushes = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let tag = format!("t{i}");
                let started = Instant::now();
                let digest = push_image(&c, &url, "load/app", &tag, &format!("load {i}")).await;
                pushes.push(Push {
                    tag,
                    digest,
                    started,
                    finished: Instant::now(),
                });
                count.fetch_add(1, Ordering::SeqCst);
            }
            pushes
        })
    };
    wait_for_pushes(&count, 5, &pusher).await;
    let backup_started = Instant::now();
    let (ok, out) = {
        let (url, pass, file) = (
            cluster.nodes[1].url.clone(),
            passphrase.clone(),
            file.clone(),
        );
        tokio::task::spawn_blocking(move || {
            backup(&url, &["--passphrase-file", pass.to_str().unwrap()], &file)
        })
        .await
        .unwrap()
    };
    let backup_finished = Instant::now();
    assert!(ok, "backup failed: {out}");
    let during = count.load(Ordering::SeqCst);
    wait_for_pushes(&count, during + 3, &pusher).await;
    stop.store(true, Ordering::SeqCst);
    let pushes = pusher.await.unwrap();
    let overlapping = pushes
        .iter()
        .filter(|p| p.finished > backup_started && p.started < backup_finished)
        .count();
    eprintln!(
        "{} pushes, {overlapping} of them while the backup ran ({:?}); {} Docker images",
        pushes.len(),
        backup_finished - backup_started,
        expected.docker_images.len()
    );
    assert!(
        overlapping >= 1,
        "no push completed while the backup ran: {} pushes",
        pushes.len()
    );
    let head = std::fs::read(&file).unwrap();
    assert!(head.starts_with(b"age-encryption.org/v1\n"), "an age file");

    // The cluster is lost: every data directory goes, blob storage stays.
    cluster.destroy_replicas();

    // Restore with another administrator password in the environment: if the users were not
    // restored, `admin` would be created anew with it and the old password would fail.
    let storage = cluster.storage_dir().to_str().unwrap().to_owned();
    let first = cluster.start_prepared(
        &[("BERTH_ADMIN_PASSWORD", "not-the-old-password")],
        |data_dir| {
            let (ok, out) = restore(
                &file,
                &[
                    "--data-dir",
                    data_dir.to_str().unwrap(),
                    "--storage-dir",
                    &storage,
                    "--passphrase-file",
                    passphrase.to_str().unwrap(),
                ],
            );
            assert!(ok, "restore failed: {out}");
            assert!(out.contains("referenced blobs are in storage"), "{out}");
            // Two tokens made to form the old cluster, and the one kept above.
            assert!(out.contains("dropped 3 join token(s)"), "{out}");
        },
    );
    assert_eq!(cluster.nodes[first].replica_id, 1);
    assert!(
        !cluster.nodes[first]
            .data_dir()
            .join("admin-password")
            .exists(),
        "no administrator was created"
    );
    let second = cluster.add_replica();
    let third = cluster.add_replica();
    assert_eq!(
        [
            cluster.nodes[second].replica_id,
            cluster.nodes[third].replica_id
        ],
        [2, 3],
        "a new cluster numbers its replicas from 1"
    );
    cluster.settled().await;

    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url.clone()).collect();
    for (user, password) in &expected.logins {
        for url in &urls {
            assert_eq!(
                admin_status(url, user, password).await,
                StatusCode::OK,
                "{user} via {url}"
            );
        }
    }
    assert_eq!(
        admin_status(&urls[0], "admin", "not-the-old-password").await,
        StatusCode::UNAUTHORIZED
    );
    for url in &urls {
        assert_eq!(
            admin_json(url, "grants").await,
            grants_before,
            "grants via {url}"
        );
        assert_eq!(admin_json(url, "orgs/acme/teams").await, teams_before);
        // alice logs in with her old password on every replica.
        let res = client()
            .get(format!("{url}/auth/token"))
            .basic_auth("alice", Some("alice-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "alice via {url}");
        // The signing keys came back: a token issued before the backup still verifies.
        let res = client()
            .get(format!("{url}/api/v0/users"))
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "old admin token via {url}");
    }
    // A whole pull over HTTP through a joined replica: manifest, config and layers, each
    // hashing to its digest.
    for (repo, tag, _) in &expected.http_images {
        pull_over_http(&urls[2], repo, tag).await;
    }
    for url in &urls {
        for (repo, tag, digest) in &expected.http_images {
            assert_tag(url, repo, tag, digest).await;
        }
        for image in &expected.docker_images {
            let (repo, tag) = image.name.rsplit_once(':').unwrap();
            assert_tag(url, repo, tag, &image.digest).await;
        }
    }
    // Consistent at one point in time: every push acknowledged before the backup began is in
    // it, none begun after it ended is, and whatever is in it is whole.
    for p in &pushes {
        let res = client()
            .get(format!("{}/v2/load/app/manifests/{}", urls[1], p.tag))
            .header("accept", support::oci::ANY_MANIFEST)
            .send()
            .await
            .unwrap();
        if p.finished < backup_started {
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "{} was acknowledged before",
                p.tag
            );
        } else if p.started > backup_finished {
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{} began after", p.tag);
            continue;
        }
        if res.status() == StatusCode::OK {
            assert_eq!(res.headers()["docker-content-digest"], p.digest.as_str());
        }
    }

    // The Docker engine pulls every image again, through a replica that joined.
    if docker_works {
        let host = format!("localhost:{}", port(&cluster.nodes[second]));
        // Children first: the second image was built on the first.
        let mut local: Vec<String> = expected
            .docker_images
            .iter()
            .rev()
            .map(|i| i.id.clone())
            .collect();
        remove_images(&local);
        for image in &expected.docker_images {
            let reference = format!("{host}/{}", image.name);
            docker(&["pull", &reference]);
            assert_eq!(image_id(&reference), image.id, "{reference}");
            assert_eq!(repo_digest(&host, &image.name), image.digest, "{reference}");
            local.push(reference);
        }
        local.reverse();
        remove_images(&local);
    }

    // The old cluster's join token admits nobody; the restored cluster takes new pushes.
    let mut stranger = Berth::new(
        &[
            "--storage-dir",
            &storage,
            "--join",
            &urls[0],
            "--join-token",
            &old_token,
        ],
        support::cluster::FAST_RAFT,
    );
    let refused = stranger.try_spawn("127.0.0.1:0");
    assert!(
        refused
            .as_ref()
            .is_err_and(|log| log.contains("join token is not valid")),
        "{refused:?}"
    );
    let after = push_image(&c, &urls[2], "after/restore", "v1", "after").await;
    assert_tag(&urls[0], "after/restore", "v1", &after).await;
}

/// Waits (bounded) until the pushing client has done `n` pushes; fails if it stopped.
async fn wait_for_pushes(
    count: &AtomicUsize,
    n: usize,
    pusher: &tokio::task::JoinHandle<Vec<Push>>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < n {
        assert!(!pusher.is_finished(), "the pushing client failed");
        assert!(Instant::now() < deadline, "fewer than {n} pushes in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_restore_refuses_bad_input_and_a_used_target_and_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let passphrase = write_passphrase(dir, PASSPHRASE);
    let pass = passphrase.to_str().unwrap();
    let node = Berth::start();
    let c = client();
    let digest = push_image(&c, &node.url, "solo/app", "v1", "solo").await;

    // The API refuses to write a backup without a passphrase unless asked, and wants an
    // administrator.
    let api = format!("{}/api/v0/backup", node.url);
    let anonymous = c
        .post(&api)
        .json(&serde_json::json!({ "passphrase": PASSPHRASE }));
    assert_eq!(
        anonymous.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for body in [
        serde_json::json!({}),
        serde_json::json!({ "passphrase": "too short" }),
    ] {
        let res = c
            .post(&api)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let res = c
        .post(&api)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({ "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(res.headers()["berth-backup-blobs"], "2");
    let body = res.bytes().await.unwrap();
    assert!(body.starts_with(b"age-encryption.org/v1\n"));

    // The command line: a passphrase, or the explicit choice of none.
    let file = dir.join("good.bkp");
    let (ok, out) = backup(&node.url, &[], &file);
    assert!(!ok && out.contains("--no-encryption"), "{out}");
    let (ok, out) = backup(&node.url, &["--passphrase-file", pass], &file);
    assert!(ok, "{out}");
    let plain = dir.join("plain.bkp");
    let (ok, out) = backup(&node.url, &["--no-encryption"], &plain);
    assert!(ok, "{out}");
    assert!(std::fs::read(&plain)
        .unwrap()
        .starts_with(b"berth-backup/1\n"));
    drop(node);

    let good = std::fs::read(&file).unwrap();
    let variant = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let truncated = variant("truncated.bkp", &good[..good.len() / 2]);
    let cut_short = variant("cut-short.bkp", &good[..good.len() - 1]);
    let mut flipped_bytes = good.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x01;
    let flipped = variant("flipped.bkp", &flipped_bytes);
    let newer = variant("newer.bkp", &newer_format(&good));
    let wrong = dir.join("wrong-passphrase");
    std::fs::write(&wrong, "not the passphrase at all\n").unwrap();

    let target = dir.join("restored");
    let target_arg = target.to_str().unwrap().to_owned();
    let cases: Vec<(&str, &Path, Vec<&str>, &str)> = vec![
        (
            "wrong passphrase",
            &file,
            vec!["--passphrase-file", wrong.to_str().unwrap()],
            "wrong passphrase",
        ),
        ("no passphrase", &file, vec![], "--passphrase-file"),
        (
            "encrypted, read as plain",
            &file,
            vec!["--no-encryption"],
            "encrypted",
        ),
        (
            "plain, read with a passphrase",
            &plain,
            vec!["--passphrase-file", pass],
            "not encrypted",
        ),
        (
            "truncated",
            &truncated,
            vec!["--passphrase-file", pass],
            "backup is",
        ),
        (
            "cut one byte short",
            &cut_short,
            vec!["--passphrase-file", pass],
            "backup is",
        ),
        (
            "flipped byte",
            &flipped,
            vec!["--passphrase-file", pass],
            "damaged or was altered",
        ),
        (
            "newer format",
            &newer,
            vec!["--passphrase-file", pass],
            "newer than this Berth",
        ),
    ];
    for (what, input, extra, message) in cases {
        let mut args = vec!["--data-dir", target_arg.as_str()];
        args.extend(extra);
        let (ok, out) = restore(input, &args);
        assert!(!ok, "{what}: restored:\n{out}");
        assert!(out.contains(message), "{what}: {out}");
        assert!(!target.exists(), "{what}: {} was created", target.display());
    }

    // A data directory in use is refused, and replaced only when asked.
    std::fs::create_dir_all(target.join("raft")).unwrap();
    std::fs::write(target.join("raft/cluster.json"), "{}").unwrap();
    std::fs::write(target.join("notes.txt"), "keep me").unwrap();
    let (ok, out) = restore(
        &file,
        &["--data-dir", &target_arg, "--passphrase-file", pass],
    );
    assert!(!ok && out.contains("not empty"), "{out}");
    assert_eq!(
        std::fs::read_to_string(target.join("raft/cluster.json")).unwrap(),
        "{}"
    );
    let (ok, out) = restore(
        &file,
        &[
            "--data-dir",
            &target_arg,
            "--passphrase-file",
            pass,
            "--replace",
        ],
    );
    assert!(ok, "{out}");
    assert_ne!(
        std::fs::read_to_string(target.join("raft/cluster.json")).unwrap(),
        "{}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("notes.txt")).unwrap(),
        "keep me"
    );
    // The default storage (<data-dir>/storage) is not there: both blobs are reported.
    assert!(out.contains("2 of 2 referenced blobs are missing"), "{out}");

    // An unencrypted backup restores when that is said; a missing blob is reported by digest.
    let storage = dir.join("storage");
    let plain_target = dir.join("plain-restored");
    let (ok, out) = restore(
        &plain,
        &[
            "--data-dir",
            plain_target.to_str().unwrap(),
            "--storage-dir",
            storage.to_str().unwrap(),
            "--no-encryption",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("sha256:"), "missing digests are listed: {out}");
    let skip_target = dir.join("skip-restored");
    let (ok, out) = restore(
        &plain,
        &[
            "--data-dir",
            skip_target.to_str().unwrap(),
            "--no-encryption",
            "--skip-blob-check",
        ],
    );
    assert!(ok && out.contains("blob check skipped"), "{out}");

    // The restored replica serves the image's manifest.
    let mut restored = Berth::new(&[], &[]);
    let prepared = restored.data_dir();
    std::fs::create_dir_all(prepared.parent().unwrap()).unwrap();
    std::fs::rename(&target, &prepared).unwrap();
    restored.try_spawn("127.0.0.1:0").unwrap();
    assert_tag(&restored.url, "solo/app", "v1", &digest).await;
}

/// `good` (encrypted with [`PASSPHRASE`]) re-encrypted with its format line saying version 2.
fn newer_format(good: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let secret = || SecretString::from(PASSPHRASE.to_owned());
    let identity = age::scrypt::Identity::new(secret());
    let mut plain = Vec::new();
    age::Decryptor::new(good)
        .unwrap()
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain.starts_with(b"berth-backup/1\n"));
    plain[b"berth-backup/".len()] = b'2';
    let mut sealed = age::Encryptor::with_user_passphrase(secret())
        .wrap_output(Vec::new())
        .unwrap();
    sealed.write_all(&plain).unwrap();
    sealed.finish().unwrap()
}

/// The figures of BENCHMARKS.md ("Backup and restore"), not a check: `cargo test --release
/// --test backup -- --ignored --nocapture benchmark` (`BERTH_BENCH_TAGS` changes the count).
/// One replica gets 100,000 tags (distinct manifests over 100 repositories, 64 PUTs at a
/// time), then `berth backup` (encrypted, and unencrypted), `berth restore` (with the blob
/// check) and the restored replica's first start are timed; peak memory is sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark for BENCHMARKS.md (100,000 tags, minutes in release): run it by name with --release -- --ignored"]
async fn benchmark_backup_and_restore_of_100k_tags() {
    use support::oci::{image_manifest, push_blob, put_manifest, OCI_MANIFEST};
    let _serial = SERIAL.lock().await;
    let tags: usize = std::env::var("BERTH_BENCH_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const REPOS: usize = 100;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let passphrase = write_passphrase(dir, PASSPHRASE);
    let node = Berth::start();
    let c = client();
    let (config, layer) = (br#"{"bench":true}"#.to_vec(), b"bench layer".to_vec());
    for r in 0..REPOS {
        push_blob(&c, &node.url, &format!("bench/r{r}"), &config).await;
        push_blob(&c, &node.url, &format!("bench/r{r}"), &layer).await;
    }

    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut puts = tokio::task::JoinSet::new();
    for n in 0..tags {
        let slot = Arc::clone(&slots).acquire_owned().await.unwrap();
        let (c, url) = (c.clone(), node.url.clone());
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&image_manifest(&config, &[&layer])).unwrap();
        manifest["annotations"] = serde_json::json!({ "n": n.to_string() });
        let body = serde_json::to_vec(&manifest).unwrap();
        puts.spawn(async move {
            let repo = format!("bench/r{}", n % REPOS);
            let res = put_manifest(&c, &url, &repo, &format!("t{n}"), OCI_MANIFEST, &body).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            drop(slot);
        });
        while let Some(done) = puts.try_join_next() {
            done.unwrap();
        }
    }
    while let Some(done) = puts.join_next().await {
        done.unwrap();
    }
    let generated = started.elapsed();
    let state_db = std::fs::metadata(node.data_dir().join("raft/state.db"))
        .map(|m| m.len())
        .unwrap_or(0);

    let pass = passphrase.to_str().unwrap().to_owned();
    let server = node.pid();
    let mut rows = Vec::new();
    let encrypted = dir.join("bench.bkp");
    for (label, extra, out) in [
        (
            "backup, encrypted",
            vec!["--passphrase-file", pass.as_str()],
            &encrypted,
        ),
        (
            "backup, --no-encryption",
            vec!["--no-encryption"],
            &dir.join("plain.bkp"),
        ),
    ] {
        let mut args = vec!["backup", "--url", node.url.as_str()];
        args.extend(extra);
        let run = measured(&args, None, Some(out), server);
        assert!(run.ok, "{label}: {}", run.output);
        rows.push((label, run, std::fs::metadata(out).unwrap().len()));
    }
    let target = dir.join("restored");
    let run = measured(
        &[
            "restore",
            "--data-dir",
            target.to_str().unwrap(),
            "--storage-dir",
            node.storage_dir().to_str().unwrap(),
            "--passphrase-file",
            &pass,
        ],
        Some(&encrypted),
        None,
        None,
    );
    assert!(run.ok, "restore: {}", run.output);
    assert!(
        run.output.contains("all 2 referenced blobs are in storage"),
        "{}",
        run.output
    );
    rows.push(("restore (with the blob check)", run, 0));
    drop(node);

    let mut restored = Berth::new(&[], &[]);
    std::fs::create_dir_all(restored.data_dir().parent().unwrap()).unwrap();
    std::fs::rename(&target, restored.data_dir()).unwrap();
    let start = Instant::now();
    restored.try_spawn("127.0.0.1:0").unwrap();
    let first_start = start.elapsed();
    let last = tags - 1;
    let res = client()
        .get(restored.at(&format!("/v2/bench/r{}/manifests/t{last}", last % REPOS)))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    eprintln!(
        "\n{tags} tags in {REPOS} repositories, generated in {generated:.1?} ({:.0} PUT/s); \
         state.db {} MiB",
        tags as f64 / generated.as_secs_f64(),
        state_db >> 20
    );
    eprintln!(
        "| step | wall time | file size | peak RSS of the command | peak RSS of the server |"
    );
    eprintln!("|---|---|---|---|---|");
    for (label, run, size) in rows {
        eprintln!(
            "| {label} | {:.2} s | {} | {} MiB | {} |",
            run.elapsed.as_secs_f64(),
            if size > 0 {
                format!("{:.1} MiB", size as f64 / (1 << 20) as f64)
            } else {
                "-".to_owned()
            },
            run.peak_kib >> 10,
            run.server_peak_kib
                .map_or("-".to_owned(), |k| format!("{} MiB", k >> 10)),
        );
    }
    eprintln!(
        "| first start of the restored replica (to ready) | {:.2} s | - | - | - |",
        first_start.as_secs_f64()
    );
}

/// A command run by the benchmark: how long, how much memory.
struct Measured {
    ok: bool,
    output: String,
    elapsed: Duration,
    /// Highest VmHWM seen of the command.
    peak_kib: u64,
    /// Highest VmRSS seen of `server` while the command ran.
    server_peak_kib: Option<u64>,
}

/// `/proc/PID/status` field in KiB.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `berth ARGS` like [`berth_redirected`], sampling its peak memory and `server`'s.
fn measured(
    args: &[&str],
    stdin: Option<&Path>,
    stdout: Option<&Path>,
    server: Option<u32>,
) -> Measured {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .stdin(stdin.map_or_else(Stdio::null, |p| {
            Stdio::from(std::fs::File::open(p).unwrap())
        }))
        .stdout(stdout.map_or_else(Stdio::piped, |p| {
            Stdio::from(std::fs::File::create(p).unwrap())
        }))
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn berth");
    let (mut peak_kib, mut server_peak_kib) = (0, None::<u64>);
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < LONG, "berth {args:?} did not finish");
        peak_kib = peak_kib.max(proc_kib(child.id(), "VmHWM:").unwrap_or(0));
        if let Some(rss) = server.and_then(|pid| proc_kib(pid, "VmRSS:")) {
            server_peak_kib = Some(server_peak_kib.unwrap_or(0).max(rss));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Measured {
        ok: out.status.success(),
        output,
        elapsed,
        peak_kib,
        server_peak_kib,
    }
}
