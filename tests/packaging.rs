//! Running Berth as a product (issue 10): the `FROM scratch` image built by
//! `packaging/build-image.sh`, `compose.yaml` as Compose reads it, the secrets
//! `packaging/make-secrets.sh` writes, and `packaging/haproxy.cfg` in front of real replicas.
//!
//! `docker compose up` itself needs images from a registry (MinIO, HAProxy), which this
//! machine cannot pull: each part is run here instead with what the machine has (the image
//! with `--network none`, the bundle and the shared join token on local replicas, Debian's
//! HAProxy with the repository's configuration).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{berth_cli, FAST_RAFT};
use support::{external_tool, run_cmd, run_cmd_with, Berth};

/// Docker and the clusters take both cores: one test at a time in this binary (`.lock()` in
/// async tests, `.blocking_lock()` in the others).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const LONG: Duration = Duration::from_secs(600);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `packaging/make-secrets.sh` writing into `dir` instead of ./secrets/.
fn make_secrets(dir: &Path) {
    let mut cmd = Command::new(repo().join("packaging/make-secrets.sh"));
    cmd.env("SECRETS_DIR", dir);
    let out = run_cmd_with(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "make-secrets.sh: {}", text(&out));
}

/// `docker-compose config` of the repository's compose.yaml, as JSON.
fn compose_config() -> Value {
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-f", "compose.yaml", "config"])
        .current_dir(repo());
    let out = run_cmd_with(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        text(&out)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("docker-compose config prints YAML")
}

/// The `KEY=VALUE` environment of a service (Compose prints a map).
fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (secret name, path in the container) of a service's secrets.
fn secret_mounts(service: &Value) -> Vec<(String, String)> {
    service["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            let source = s["source"].as_str().expect("source").to_owned();
            let target = s["target"].as_str().unwrap_or(&source);
            let target = if target.starts_with('/') {
                target.to_owned()
            } else {
                format!("/run/secrets/{target}")
            };
            (source, target)
        })
        .collect()
}

/// Where make-secrets.sh put the file a top-level secret names (`./secrets/...`).
fn secret_file(config: &Value, name: &str, secrets: &Path) -> PathBuf {
    let file = config["secrets"][name]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("secret {name} has no file"));
    let relative = Path::new(file)
        .strip_prefix(repo().join("secrets"))
        .unwrap_or_else(|_| panic!("secret {name} is not under ./secrets/: {file}"));
    secrets.join(relative)
}

#[test]
fn compose_file_declares_three_replicas_s3_a_load_balancer_and_their_secrets() {
    if !external_tool("docker-compose", &["version"]) {
        return;
    }
    let config = compose_config();
    let services = config["services"].as_object().expect("services");
    for name in ["berth-1", "berth-2", "berth-3", "minio", "bucket", "lb"] {
        assert!(services.contains_key(name), "no service {name}");
    }

    for n in 1..=3 {
        let name = format!("berth-{n}");
        let s = &services[&name];
        assert_eq!(s["image"], "berth:latest", "{name}");
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_array()
            .expect("healthcheck")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(&test[..3], ["CMD", "/berth", "healthcheck"], "{name}");
        let volumes = s["volumes"].to_string();
        assert!(
            volumes.contains(&format!("berth-{n}-data:/data")),
            "{volumes}"
        );
        let env = environment(s);
        assert_eq!(env["BERTH_TLS__MODE"], "bundle", "{name}");
        assert_eq!(env["BERTH_ADVERTISE"], format!("https://{name}:5000"));
        assert_eq!(
            env["BERTH_CLUSTER__JOIN_TOKEN_FILE"],
            "/run/secrets/join_token"
        );
        assert_eq!(
            env["BERTH_URL"], "https://127.0.0.1:5000",
            "the health check's URL"
        );
        assert!(env["BERTH_STORAGE_URL"].starts_with("s3://"), "{name}");
        assert_eq!(env["BERTH_STORAGE__S3__ENDPOINT"], "http://minio:9000");
        assert_eq!(env["BERTH_STORAGE__S3__ALLOW_HTTP"], "true");
        assert_eq!(
            env["BERTH_STORAGE__S3__SECRET_ACCESS_KEY_FILE"],
            "/run/secrets/s3_secret_key"
        );
        let mounts: Vec<String> = secret_mounts(s).into_iter().map(|(_, t)| t).collect();
        for path in [
            "/run/secrets/join_token",
            "/run/secrets/s3_secret_key",
            "/run/secrets/tls/ca.pem",
            "/run/secrets/tls/cert.pem",
            "/run/secrets/tls/key.pem",
        ] {
            assert!(mounts.iter().any(|m| m == path), "{name} lacks {path}");
        }
        if n == 1 {
            assert!(!env.contains_key("BERTH_CLUSTER__JOIN"), "berth-1 creates");
            assert_eq!(
                env["BERTH_ADMIN_PASSWORD_FILE"],
                "/run/secrets/admin_password"
            );
        } else {
            assert_eq!(env["BERTH_CLUSTER__JOIN"], "https://berth-1:5000");
            assert_eq!(
                s["depends_on"]["berth-1"]["condition"], "service_healthy",
                "{name} joins once berth-1 is healthy"
            );
        }
    }

    let minio = &services["minio"];
    assert!(minio["healthcheck"]["test"].is_array());
    assert!(minio["volumes"].to_string().contains(":/data"));
    assert_eq!(
        environment(minio)["MINIO_ROOT_PASSWORD_FILE"],
        "/run/secrets/s3_secret_key"
    );
    let bucket = &services["bucket"];
    assert_eq!(
        bucket["depends_on"]["minio"]["condition"],
        "service_healthy"
    );
    assert!(bucket["entrypoint"].to_string().contains("mc mb"));
    assert_eq!(
        services["berth-1"]["depends_on"]["bucket"]["condition"],
        "service_completed_successfully"
    );

    let lb = &services["lb"];
    assert!(lb["image"].as_str().unwrap().starts_with("haproxy:"));
    assert_eq!(lb["ports"][0]["published"], 443);
    let cfg_mount = lb["volumes"][0].as_str().expect("haproxy.cfg mount");
    assert!(cfg_mount.contains("packaging/haproxy.cfg:"), "{cfg_mount}");
    let cfg = std::fs::read_to_string(repo().join("packaging/haproxy.cfg")).unwrap();
    let port = lb["ports"][0]["target"].to_string();
    for needle in [
        "mode tcp".to_owned(),
        format!("bind :{port}"),
        "option httpchk".to_owned(),
        "uri /health".to_owned(),
        "check-ssl verify required ca-file /run/secrets/tls/ca.pem".to_owned(),
        "server berth-1 berth-1:5000".to_owned(),
        "server berth-2 berth-2:5000".to_owned(),
        "server berth-3 berth-3:5000".to_owned(),
    ] {
        assert!(cfg.contains(&needle), "haproxy.cfg lacks {needle:?}");
    }
    assert!(secret_mounts(lb).contains(&("tls_ca".into(), "/run/secrets/tls/ca.pem".into())));

    let volumes = config["volumes"].as_object().expect("volumes");
    for v in ["berth-1-data", "berth-2-data", "berth-3-data", "minio-data"] {
        assert!(volumes.contains_key(v), "no volume {v}");
    }
    // Every secret is a file make-secrets.sh writes, and ./secrets/ is never committed.
    let secrets = tempfile::tempdir().unwrap();
    make_secrets(secrets.path());
    let names = config["secrets"].as_object().expect("secrets");
    for name in [
        "admin_password",
        "join_token",
        "s3_secret_key",
        "backup_passphrase",
        "tls_ca",
        "tls_cert",
        "tls_key",
    ] {
        assert!(names.contains_key(name), "no secret {name}");
    }
    for name in names.keys() {
        let file = secret_file(&config, name, secrets.path());
        let content = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !content.trim().is_empty(),
            "{name}: {} is empty",
            file.display()
        );
    }
    let ignored = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "/secrets"), "{ignored}");
}

/// The bundle of make-secrets.sh is what Berth serves, verified against its CA by name and by
/// address, and the compose scheme works: the first replica accepts the shared token from
/// `--join-token-file`, a second joins with the same file and no CA fingerprint.
#[test]
fn the_secrets_bundle_serves_tls_and_replicas_join_with_the_shared_token_file() {
    if !external_tool("openssl", &["version"]) {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let cluster = BundleCluster::start(2);
    let ca = cluster.secrets.path().join("tls/ca.pem");
    for node in &cluster.nodes {
        assert_eq!(node.ready["tls"], true);
        let port = node.addr.rsplit_once(':').unwrap().1;
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("https://{host}:{port}");
            let (ok, out, err) = berth_cli(&[
                "healthcheck",
                "--url",
                &url,
                "--ca-file",
                ca.to_str().unwrap(),
            ]);
            assert!(ok, "{url}: {out}{err}");
        }
    }
    let (ok, out, err) = berth_cli(&[
        "replicas",
        "--url",
        &cluster.nodes[1].url,
        "--ca-file",
        ca.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("https://")).count(),
        2,
        "{out}"
    );
}

/// Replicas with the TLS bundle of make-secrets.sh: the first started with the compose
/// file's `--join-token-file`, the others joining it with the same file.
struct BundleCluster {
    secrets: tempfile::TempDir,
    _storage: tempfile::TempDir,
    nodes: Vec<Berth>,
}

impl BundleCluster {
    fn start(n: usize) -> Self {
        let secrets = tempfile::tempdir().unwrap();
        make_secrets(secrets.path());
        let storage = tempfile::tempdir().unwrap();
        let tls = secrets.path().join("tls");
        let token = secrets.path().join("join_token");
        let base = [
            "--tls",
            "bundle",
            "--tls-dir",
            tls.to_str().unwrap(),
            "--storage-dir",
            storage.path().to_str().unwrap(),
            "--join-token-file",
            token.to_str().unwrap(),
        ];
        let mut nodes = vec![Berth::start_opts(&base, FAST_RAFT)];
        let first = nodes[0].url.clone();
        for _ in 1..n {
            let mut args = base.to_vec();
            args.extend(["--join", first.as_str()]);
            nodes.push(Berth::start_opts(&args, FAST_RAFT));
        }
        BundleCluster {
            secrets,
            _storage: storage,
            nodes,
        }
    }
}

/// A child process killed (by its own id) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1 for a tool that cannot report the port it bound (HAProxy).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `packaging/haproxy.cfg` with only its addresses changed (replicas on loopback ports, the
/// CA where make-secrets.sh wrote it) passes TLS through to the replicas, and once a replica
/// stops its health check takes it out: every request then succeeds.
#[tokio::test]
async fn haproxy_cfg_passes_tls_through_and_skips_a_replica_whose_health_fails() {
    if !external_tool("haproxy", &["-v"]) || !external_tool("openssl", &["version"]) {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = BundleCluster::start(3);
    let ca = cluster.secrets.path().join("tls/ca.pem");
    let lb_port = free_port();
    let mut cfg = std::fs::read_to_string(repo().join("packaging/haproxy.cfg")).unwrap();
    let mut replace = |from: &str, to: &str| {
        assert!(cfg.contains(from), "haproxy.cfg lacks {from:?}");
        cfg = cfg.replace(from, to);
    };
    replace("bind :8443", &format!("bind 127.0.0.1:{lb_port}"));
    replace("/run/secrets/tls/ca.pem", ca.to_str().unwrap());
    for (i, node) in cluster.nodes.iter().enumerate() {
        let n = i + 1;
        replace(
            &format!("server berth-{n} berth-{n}:5000"),
            &format!("server berth-{n} {}", node.addr),
        );
    }
    let work = tempfile::tempdir().unwrap();
    let cfg_path = work.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let check = run_cmd("haproxy", &["-c", "-f", cfg_path.to_str().unwrap()], LONG);
    assert!(check.status.success(), "haproxy -c: {}", text(&check));
    let log = std::fs::File::create(work.path().join("haproxy.log")).unwrap();
    let _haproxy = KillOnDrop(
        Command::new("haproxy")
            .args(["-db", "-f", cfg_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy"),
    );

    let pem = std::fs::read(&ca).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        // A connection per request, so that the balancer chooses a replica each time.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let via_lb = format!("https://localhost:{lb_port}/health");
    let haproxy_log = || std::fs::read_to_string(work.path().join("haproxy.log")).unwrap();
    let streak = |need: usize, what: &str| {
        let http = http.clone();
        let url = via_lb.clone();
        let what = what.to_owned();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut ok = 0;
            let mut ids = std::collections::BTreeSet::new();
            while ok < need {
                assert!(Instant::now() < deadline, "{what}: {ok} successes in a row");
                match http.get(&url).send().await {
                    Ok(res) if res.status().is_success() => {
                        let h: Value = res.json().await.unwrap();
                        ids.insert(h["replica_id"].as_u64().unwrap());
                        ok += 1;
                    }
                    _ => {
                        ok = 0;
                        ids.clear();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            ids
        }
    };
    // Through the load balancer the client sees the replicas' own certificate (for
    // `localhost`, from the bundle's CA) and reaches each of them.
    let ids = streak(30, "all replicas up").await;
    assert_eq!(ids.len(), 3, "{ids:?}\n{}", haproxy_log());

    cluster.nodes[2].kill();
    let ids = streak(30, "after a replica stopped").await;
    assert!(!ids.contains(&3), "{ids:?}");
    assert!(
        haproxy_log().contains("berth/berth-3 is DOWN"),
        "{}",
        haproxy_log()
    );

    // A replica that still answers but cannot serve (no quorum: /health says 503) is taken
    // out too: the check reads the HTTP status, not only the connection.
    cluster.nodes[1].kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !haproxy_log().contains("berth/berth-1 is DOWN, reason: Layer7 wrong status") {
        assert!(Instant::now() < deadline, "{}", haproxy_log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A DNS server on 127.0.0.153:53 that answers every A question with 127.0.0.1 (and other
/// questions with no answer), until the test binary exits.
struct LoopbackDns {
    socket: std::net::UdpSocket,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LoopbackDns {
    /// `None` (a printed reason) where port 53 cannot be bound, i.e. not as root; with
    /// `BERTH_REQUIRE_EXTERNAL=1` that fails the test instead.
    fn start() -> Option<Self> {
        let socket = match std::net::UdpSocket::bind("127.0.0.153:53") {
            Ok(socket) => socket,
            Err(e) => {
                let reason = format!("cannot bind 127.0.0.153:53 for the DNS check: {e}");
                assert!(
                    std::env::var("BERTH_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
                    "{reason}"
                );
                eprintln!("skipping the DNS check: {reason}");
                return None;
            }
        };
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (server, count) = (socket.try_clone().unwrap(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((len, from)) = server.recv_from(&mut buf) {
                let Some(reply) = dns_reply(&buf[..len]) else {
                    continue;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = server.send_to(&reply, from);
            }
        });
        Some(LoopbackDns { socket, answered })
    }

    fn ip(&self) -> String {
        self.socket.local_addr().unwrap().ip().to_string()
    }

    fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The answer to one DNS query: its question, and for type A the address 127.0.0.1.
fn dns_reply(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(query[end]) + 1;
    }
    let question = query.get(12..end + 5)?;
    let is_a = query.get(end + 1..end + 3)? == [0, 1];
    let mut reply = query[..2].to_vec(); // the id
    reply.extend([0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    reply.extend(question);
    if is_a {
        // A pointer to the question's name, type A, class IN, TTL 5 s, 4 bytes: 127.0.0.1.
        reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some(reply)
}

/// `berth` in the image looks a name up through the DNS server of its resolv.conf.
fn resolves_through_dns(tag: &str, dns: &LoopbackDns) {
    let out = run_cmd(
        "docker",
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "--dns",
            &dns.ip(),
            tag,
            "healthcheck",
            "--url",
            "http://berth-compose-service:1",
            "--timeout",
            "5s",
        ],
        LONG,
    );
    let said = text(&out);
    assert!(
        said.contains("Connection refused"),
        "the name did not resolve: {said}"
    );
    assert!(dns.answered() > 0, "the DNS stub was not asked");
}

/// Removes what a test made in Docker, by the names it gave them.
#[derive(Default)]
struct DockerCleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let logs = run_cmd("docker", &["logs", c], LONG);
                eprintln!("--- docker logs {c} ---\n{}", text(&logs));
            }
            let _ = run_cmd("docker", &["rm", "-f", c], LONG);
        }
        for v in &self.volumes {
            let _ = run_cmd("docker", &["volume", "rm", "-f", v], LONG);
        }
        for i in &self.images {
            let _ = run_cmd("docker", &["rmi", "-f", i], LONG);
        }
    }
}

fn docker_ok(args: &[&str]) -> String {
    let out = run_cmd("docker", args, LONG);
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (bounded) for the container's HEALTHCHECK to report `healthy`.
fn wait_healthy(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.Health.Status}}",
            container,
        ]);
        match status.trim() {
            "running healthy" => return,
            s if s.starts_with("running") || s.starts_with("created") => {}
            s => panic!("{container} is {s}"),
        }
        assert!(
            Instant::now() < deadline,
            "{container} is not healthy: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The image, built by the script as a person would, then run the way compose.yaml runs
/// berth-1 (its environment, its secrets at their paths, a named volume on /data) but with no
/// network at all: MinIO is replaced by the volume's own directory. The HEALTHCHECK turns it
/// healthy over TLS, the admin commands run inside it with `docker exec`, a backup leaves
/// through stdout and is restored into a new volume through `docker run -i`.
///
/// Slow on a fresh machine: the script compiles a release build of Berth for the static
/// target (several minutes on two cores); later runs reuse it.
#[test]
fn image_is_a_static_binary_from_scratch_and_runs_berth_1_of_compose_without_network() {
    if !external_tool("docker", &["info"])
        || !external_tool("docker-compose", &["version"])
        || !external_tool("openssl", &["version"])
    {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let dockerfile = std::fs::read_to_string(repo().join("packaging/Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert_eq!(froms, ["FROM scratch"], "the image needs no base image");

    let id = std::process::id();
    let tag = format!("berth-test:packaging-{id}");
    let mut cleanup = DockerCleanup::default();
    cleanup.images.push(tag.clone());
    let mut build = Command::new(repo().join("packaging/build-image.sh"));
    build.arg(&tag);
    let out = run_cmd_with(build, Duration::from_secs(3600));
    assert!(out.status.success(), "build-image.sh: {}", text(&out));

    let inspect: Value = serde_json::from_str(&docker_ok(&["image", "inspect", &tag])).unwrap();
    let image = &inspect[0];
    let config = &image["Config"];
    assert_eq!(config["User"], "65532:65532", "not root");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/berth"]));
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    assert!(config["Volumes"]["/data"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["5000/tcp"].is_object(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/berth", "healthcheck", "--timeout", "5s"])
    );
    let size = image["Size"].as_u64().unwrap();
    eprintln!("image size: {:.1} MB", size as f64 / 1e6);
    assert!(size < 60_000_000, "the image is {size} bytes");

    let out = docker_ok(&["run", "--rm", "--network", "none", &tag, "--version"]);
    assert_eq!(out.trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
    let out = docker_ok(&["run", "--rm", "--network", "none", &tag, "serve", "--help"]);
    assert!(out.contains("--listen") && out.contains("--join"), "{out}");

    // Compose names services through Docker's DNS server: the static binary, with no NSS
    // modules to load, asks the resolver of resolv.conf (here a stub on loopback).
    if let Some(dns) = LoopbackDns::start() {
        resolves_through_dns(&tag, &dns);
    }

    // berth-1 of compose.yaml: its variables and secrets, storage in its volume.
    let compose = compose_config();
    let service = &compose["services"]["berth-1"];
    let secrets = tempfile::tempdir().unwrap();
    make_secrets(secrets.path());
    let mut run_args: Vec<String> = vec!["--network".into(), "none".into()];
    // The advertised name resolves inside the container (from /etc/hosts: the static binary
    // has no NSS modules to load).
    run_args.extend(["--add-host".into(), "berth-1:127.0.0.1".into()]);
    for (k, v) in environment(service) {
        if !k.starts_with("BERTH_STORAGE") {
            run_args.extend(["-e".into(), format!("{k}={v}")]);
        }
    }
    for (name, target) in secret_mounts(service) {
        let file = secret_file(&compose, &name, secrets.path());
        run_args.extend(["-v".into(), format!("{}:{target}:ro", file.display())]);
    }
    let run_one = |cleanup: &mut DockerCleanup, suffix: &str| -> String {
        let name = format!("berth-test-{id}-{suffix}");
        let volume = format!("berth-test-{id}-{suffix}-data");
        cleanup.containers.push(name.clone());
        cleanup.volumes.push(volume.clone());
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            // The image's HEALTHCHECK, only checked more often than its 10 s.
            "--health-interval".into(),
            "2s".into(),
            "-v".into(),
            format!("{volume}:/data"),
        ];
        args.extend(run_args.iter().cloned());
        args.push(tag.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        name
    };
    let first = run_one(&mut cleanup, "1");
    wait_healthy(&first);

    let password = ["--password-file", "/run/secrets/admin_password"];
    let out = docker_ok(&[&["exec", &first, "/berth", "replicas"][..], &password].concat());
    assert!(
        out.contains("leader") && out.contains("https://berth-1:5000"),
        "{out}"
    );
    for url in ["https://localhost:5000", "https://berth-1:5000"] {
        docker_ok(&["exec", &first, "/berth", "healthcheck", "--url", url]);
    }

    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("berth.bkp");
    let mut cmd = Command::new("docker");
    cmd.args(["exec", &first, "/berth", "backup"])
        .args(password)
        .args(["--passphrase-file", "/run/secrets/backup_passphrase"])
        .stdout(std::fs::File::create(&backup).unwrap())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "backup: {}", text(&out));
    assert!(std::fs::metadata(&backup).unwrap().len() > 1000);

    // SIGTERM from `docker stop`: a clean exit.
    docker_ok(&["stop", "--time", "60", &first]);
    let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &first]);
    assert_eq!(code.trim(), "0");

    // Restore into a new volume, reading the backup on stdin, then serve it.
    let restored_volume = format!("berth-test-{id}-2-data");
    cleanup.volumes.push(restored_volume.clone());
    let mut restore: Vec<String> = vec!["run".into(), "--rm".into(), "-i".into()];
    restore.extend(["-v".into(), format!("{restored_volume}:/data")]);
    restore.extend(run_args.iter().cloned());
    restore.extend([
        tag.clone(),
        "restore".into(),
        "--passphrase-file".into(),
        "/run/secrets/backup_passphrase".into(),
    ]);
    let out = Command::new("docker")
        .args(&restore)
        .stdin(std::fs::File::open(&backup).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", text(&out));
    let second = run_one(&mut cleanup, "2");
    wait_healthy(&second);
    let out = docker_ok(
        &[
            &["exec", &second, "/berth", "user"][..],
            &password,
            &["list"],
        ]
        .concat(),
    );
    assert!(out.contains("admin"), "{out}");
}
