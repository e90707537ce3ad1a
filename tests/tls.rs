//! TLS end to end: `--tls auto` (Berth's own cluster CA, served at `/ca.pem`), `--tls bundle`
//! (a company CA's certificates, made here with rcgen), a three-replica cluster whose replicas
//! join with fingerprinted tokens and talk TLS to each other, and the real Docker engine
//! pushing and pulling over TLS with the CA installed under `/etc/docker/certs.d/`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use support::cluster::{berth_cli, FAST_RAFT};
use support::oci::{push_image, OCI_MANIFEST};
use support::{external_tool, run_cmd, run_ok, Berth};
use tokio::sync::Mutex;

/// One scenario at a time: the cluster and Docker scenarios are heavy for two cores. (A tokio
/// mutex: async tests hold it across awaits, each on its own runtime.)
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A client that trusts only `ca_pem` (no built-in roots), as a client given `/ca.pem` does.
fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A client that checks nothing: only to fetch `/ca.pem` before trusting it, then compare it
/// with a fingerprint known otherwise (as `curl -k` would).
fn unverified_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Hex SHA-256 of the DER of the first certificate in `pem`.
fn fingerprint(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    hex::encode(Sha256::digest(der.as_ref()))
}

/// Fetches `/ca.pem` unverified and checks its content type.
async fn fetch_ca(base: &str) -> String {
    let res = unverified_client()
        .get(format!("{base}/ca.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-pem-file");
    let pem = res.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    pem
}

/// Pushes an image through `push` and reads its manifest back through `pull`.
async fn push_and_pull(c: &reqwest::Client, push: &str, pull: &str, repo: &str) {
    let digest = push_image(c, push, repo, "v1", repo).await;
    let res = c
        .get(format!("{pull}/v2/{repo}/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["docker-content-digest"], digest.as_str());
}

#[tokio::test]
async fn auto_tls_serves_its_ca_and_only_clients_trusting_it_get_in() {
    let _serial = SERIAL.lock().await;
    let b = Berth::start_with(&["--tls", "auto", "--san", "127.0.0.1", "--san", "localhost"]);
    assert_eq!(b.ready["tls"], true, "{}", b.ready);
    assert!(b.url.starts_with("https://127.0.0.1:"), "{}", b.url);

    let ca = fetch_ca(&b.url).await;
    assert_eq!(b.ready["ca_sha256"], fingerprint(&ca).as_str());
    let stored = std::fs::read_to_string(b.data_dir().join("tls/ca.pem")).unwrap();
    assert_eq!(stored, ca);

    // A client trusting the CA pushes and pulls, by IP address and by name, over HTTP/2.
    let trusting = client_trusting(&ca);
    push_and_pull(&trusting, &b.url, &b.url, "tls/auto").await;
    let by_name = b.url.replace("127.0.0.1", "localhost");
    let res = trusting.get(format!("{by_name}/v2/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN offers h2");

    // Without the CA (the built-in web roots only), verification fails.
    let err = support::client()
        .get(b.at("/v2/"))
        .send()
        .await
        .expect_err("a client without the CA must not connect");
    let chain = format!("{err:?}");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "{chain}"
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = support::client()
        .get(format!("http://{}/v2/", b.addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // The server key is private; the same certificate is kept across a restart.
    let key = b.data_dir().join("tls/key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cert_before = std::fs::read_to_string(b.data_dir().join("tls/cert.pem")).unwrap();
    let mut b = b;
    b.restart();
    assert_eq!(
        std::fs::read_to_string(b.data_dir().join("tls/cert.pem")).unwrap(),
        cert_before
    );
    assert_eq!(fetch_ca(&b.url).await, ca, "the cluster CA never changes");
    push_and_pull(&trusting, &b.url, &b.url, "tls/after-restart").await;
}

/// A company PKI made with rcgen: a root, an intermediate, and a server certificate for
/// 127.0.0.1 and localhost issued by the intermediate. Written as `ca.pem` (the root),
/// `cert.pem` (server, then intermediate) and `key.pem`.
fn company_bundle(dir: &Path) -> String {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_params = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example Corp");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Example Corp Root CA");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);

    let inter_key = KeyPair::generate().unwrap();
    let inter_params = ca_params("Example Corp Issuing CA");
    let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = Issuer::new(inter_params, inter_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "registry.example.com");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap();

    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), root.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem() + &inter.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    root.pem()
}

#[tokio::test]
async fn a_company_bundle_is_served_and_chains_to_the_company_ca() {
    let _serial = SERIAL.lock().await;
    let pki = tempfile::tempdir().unwrap();
    let bundle = pki.path().join("tls");
    let root_pem = company_bundle(&bundle);
    let dir = bundle.to_str().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let storage = storage.path().to_str().unwrap();
    let args = [
        "--tls",
        "bundle",
        "--tls-dir",
        dir,
        "--storage-dir",
        storage,
    ];
    let b = Berth::start_opts(&args, FAST_RAFT);
    assert_eq!(b.ready["tls"], true);
    assert_eq!(b.ready["ca_sha256"], fingerprint(&root_pem).as_str());
    assert_eq!(
        fetch_ca(&b.url).await,
        root_pem,
        "/ca.pem is the company root"
    );

    // Only the company root is trusted: the served chain (leaf + intermediate) leads to it.
    let trusting = client_trusting(&root_pem);
    push_and_pull(&trusting, &b.url, &b.url, "tls/bundle").await;
    assert!(support::client().get(b.at("/v2/")).send().await.is_err());

    // A second replica with the same bundle joins: replicas trust the company root, so the
    // token needs no fingerprint (the cluster stores no CA of its own).
    let root_file = bundle.join("ca.pem");
    let (ok, token, err) = berth_cli(&[
        "join-token",
        "--url",
        &b.url,
        "--ca-file",
        root_file.to_str().unwrap(),
    ]);
    assert!(ok, "join-token: {err}");
    let token = token.trim();
    assert!(
        !token.contains('.'),
        "no cluster CA, no fingerprint: {token}"
    );
    let mut join_args = args.to_vec();
    join_args.extend(["--join", &b.url, "--join-token", token]);
    let second = Berth::start_opts(&join_args, FAST_RAFT);
    settled(&trusting, &[&b, &second]).await;
    push_and_pull(&trusting, &second.url, &b.url, "tls/bundle-cluster").await;
    drop(second);

    // A bundle whose certificate another CA issued is refused at start, with the reason.
    let other = tempfile::tempdir().unwrap();
    company_bundle(other.path());
    std::fs::copy(other.path().join("ca.pem"), bundle.join("ca.pem")).unwrap();
    let mut bad = Berth::new(&["--tls", "bundle", "--tls-dir", dir], &[]);
    let err = bad
        .try_spawn("127.0.0.1:0")
        .expect_err("untrusted bundle must not start");
    assert!(err.contains("is not trusted by"), "{err}");
}

/// Waits (bounded) until every replica reports the same applied index and one leads.
async fn settled(c: &reqwest::Client, nodes: &[&Berth]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut applied = Vec::new();
        let mut leaders = 0;
        for node in nodes {
            let h: serde_json::Value = match c.get(node.at("/health")).send().await {
                Ok(res) => res.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            leaders += usize::from(h["role"] == "leader");
            applied.push(h["last_applied"].as_u64());
        }
        if leaders == 1
            && applied.iter().all(Option::is_some)
            && applied.windows(2).all(|w| w[0] == w[1])
        {
            return;
        }
        assert!(Instant::now() < deadline, "not settled: {applied:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_tls_cluster_joins_with_fingerprinted_tokens_and_replicates() {
    let _serial = SERIAL.lock().await;
    let storage = tempfile::tempdir().unwrap();
    let storage = storage.path().to_str().unwrap().to_owned();
    let tls: &[&str] = &["--tls", "auto", "--storage-dir", &storage];
    let first = Berth::start_opts(tls, FAST_RAFT);
    let ca = fetch_ca(&first.url).await;
    let ca_file = first.data_dir().join("tls/ca.pem");
    let ca_file = ca_file.to_str().unwrap();
    let c = client_trusting(&ca);

    // `berth join-token` over https trusts the CA given with --ca-file; the token carries
    // the CA fingerprint.
    let token = || {
        let (ok, out, err) = berth_cli(&["join-token", "--url", &first.url, "--ca-file", ca_file]);
        assert!(ok, "join-token: {err}");
        out.trim().to_owned()
    };
    let t = token();
    let (_, fp) = t.rsplit_once('.').expect("a fingerprinted token");
    assert_eq!(fp, fingerprint(&ca));
    // Without the CA the command cannot talk to the cluster.
    let (ok, _, _) = berth_cli(&["join-token", "--url", &first.url]);
    assert!(!ok, "join-token without --ca-file must fail verification");

    let join = |token: &str| {
        let mut args = tls.to_vec();
        args.extend(["--join", &first.url, "--join-token", token]);
        Berth::start_opts(&args, FAST_RAFT)
    };
    let second = join(&t);
    let third = join(&token());
    for node in [&second, &third] {
        assert_eq!(node.ready["tls"], true);
        assert_eq!(node.ready["ca_sha256"], fp);
        assert_eq!(
            fetch_ca(&node.url).await,
            ca,
            "one CA for the whole cluster"
        );
    }
    // Every replica has its own server certificate from that CA.
    let cert = |b: &Berth| std::fs::read_to_string(b.data_dir().join("tls/cert.pem")).unwrap();
    assert_ne!(cert(&first), cert(&second));
    assert_ne!(cert(&second), cert(&third));
    settled(&c, &[&first, &second, &third]).await;

    // Replication over TLS: push through one replica, pull through another.
    push_and_pull(&c, &second.url, &third.url, "tls/cluster").await;
    push_and_pull(&c, &third.url, &first.url, "tls/cluster-2").await;

    // The admin API lists three replicas at https addresses, all answering.
    let (ok, out, err) = berth_cli(&[
        "replicas",
        "--url",
        &third.url,
        "--ca-file",
        ca_file,
        "--json",
    ]);
    assert!(ok, "replicas: {err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let replicas = listed["replicas"].as_array().or(listed.as_array()).unwrap();
    assert_eq!(replicas.len(), 3, "{out}");
    for r in replicas {
        assert!(
            r["address"].as_str().unwrap().starts_with("https://"),
            "{r}"
        );
        assert_eq!(r["answers"], true, "{r}");
    }

    // A token without the fingerprint cannot join a TLS cluster; one with a wrong fingerprint
    // neither (the member's CA does not match it).
    let bare = token().rsplit_once('.').unwrap().0.to_owned();
    let wrong = format!("{bare}.{}", "0".repeat(64));
    for (bad_token, why) in [
        (bare.as_str(), "fingerprint"),
        (wrong.as_str(), "does not match"),
    ] {
        let mut args = tls.to_vec();
        args.extend(["--join", &first.url, "--join-token", bad_token]);
        let mut stranger = Berth::new(&args, FAST_RAFT);
        let err = stranger
            .try_spawn("127.0.0.1:0")
            .expect_err("must not join");
        assert!(err.contains(why), "{err}");
    }
}

/// Skips a test with a printed reason, or fails it under `BERTH_REQUIRE_EXTERNAL=1` (CI).
fn skip(reason: &str) {
    assert!(
        std::env::var("BERTH_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "{reason}, and BERTH_REQUIRE_EXTERNAL=1 requires it"
    );
    eprintln!("skipping: {reason}");
}

/// `/etc/docker/certs.d/HOST:PORT/` holding `ca.crt`, removed again on drop (only that
/// directory: certs.d itself and other hosts' entries are left alone).
struct DockerCa(PathBuf);

impl DockerCa {
    fn install(host: &str, ca_pem: &str) -> Result<DockerCa, String> {
        let dir = PathBuf::from(format!("/etc/docker/certs.d/{host}"));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("ca.crt"), ca_pem))
            .map_err(|e| format!("cannot write {}/ca.crt: {e}", dir.display()))?;
        Ok(DockerCa(dir))
    }
}

impl Drop for DockerCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds a FROM-scratch image tagged `image` (the classic builder: nothing is pulled);
/// returns its id.
fn build_image(image: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("hello.txt"), "hello over TLS\n").unwrap();
    std::fs::write(
        work.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\n",
    )
    .unwrap();
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", image, "."])
        .current_dir(work.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    image_id(image)
}

fn image_id(image: &str) -> String {
    run_ok(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", image],
        DOCKER_TIMEOUT,
    )
    .trim()
    .to_owned()
}

/// Pushes `image`, removes it locally, pulls it back and checks it is the same image.
fn push_remove_pull(image: &str, id: &str) {
    run_ok("docker", &["push", image], DOCKER_TIMEOUT);
    let _ = run_cmd("docker", &["rmi", "-f", image, id], DOCKER_TIMEOUT);
    run_ok("docker", &["pull", image], DOCKER_TIMEOUT);
    assert_eq!(image_id(image), id);
    let _ = run_cmd("docker", &["rmi", "-f", image, id], DOCKER_TIMEOUT);
}

#[test]
fn docker_pushes_and_pulls_over_tls_with_the_ca_in_certs_d() {
    if !external_tool("docker", &["info"]) {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let b = Berth::start_with(&["--tls", "auto"]);
    let host = b.addr.clone(); // 127.0.0.1:PORT: a name the server certificate covers
    let ca = std::fs::read_to_string(b.data_dir().join("tls/ca.pem")).unwrap();
    let installed = match DockerCa::install(&host, &ca) {
        Ok(installed) => installed,
        Err(reason) => return skip(&reason),
    };
    let image = format!("{host}/tls/hello:1");
    let id = build_image(&image);
    // The listener speaks only TLS, so a push that succeeds went over TLS. (The engine does
    // not verify certificates of registries on 127.0.0.0/8, which it treats as insecure: the
    // next test shows the CA at work on an address it does verify.)
    push_remove_pull(&image, &id);
    drop(installed);
}

/// A test host: a network namespace of this test's own, linked to this one by a veth pair,
/// at an address of 198.18.0.0/15 (reserved for benchmarking networks, RFC 2544: no real
/// host is there). Deleted with everything in it on drop.
struct TestHost {
    ns: String,
    /// The host's address, as the Docker engine (outside the namespace) reaches it.
    addr: &'static str,
}

const TEST_HOST_ADDR: &str = "198.18.77.2";
/// The test host's network (/30): this side's address, then the host's.
const TEST_PEER_CIDR: &str = "198.18.77.1/30";
const TEST_HOST_CIDR: &str = "198.18.77.2/30";

impl TestHost {
    fn create() -> Result<TestHost, String> {
        // Only where nothing of this machine uses the range already.
        let ip = |args: &[&str]| run_cmd("ip", args, Duration::from_secs(30));
        let addrs = ip(&["-4", "-o", "addr", "show"]);
        let routes = ip(&["-4", "route", "show"]);
        if !addrs.status.success() {
            return Err("`ip addr` does not work here".into());
        }
        let used = String::from_utf8_lossy(&addrs.stdout).to_string()
            + &String::from_utf8_lossy(&routes.stdout);
        if used.contains("198.18.") || used.contains("198.19.") {
            return Err("198.18.0.0/15 is in use on this machine".into());
        }
        let id = std::process::id() % 100_000;
        let host = TestHost {
            ns: format!("berth-tls-{id}"),
            addr: TEST_HOST_ADDR,
        };
        let (outer, inner) = (format!("bt{id}o"), format!("bt{id}i"));
        let ns = host.ns.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", ns],
            vec![
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
            vec!["link", "set", &inner, "netns", ns],
            vec!["addr", "add", TEST_PEER_CIDR, "dev", &outer],
            vec!["link", "set", &outer, "up"],
            vec!["-n", ns, "addr", "add", TEST_HOST_CIDR, "dev", &inner],
            vec!["-n", ns, "link", "set", &inner, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = ip(&step);
            if !out.status.success() {
                let _ = ip(&["link", "del", &outer]);
                return Err(format!(
                    "`ip {}` failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(host)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair too.
        let _ = run_cmd("ip", &["netns", "del", &self.ns], Duration::from_secs(30));
    }
}

#[test]
fn docker_verifies_the_cluster_ca_from_certs_d_on_a_non_loopback_host() {
    if !external_tool("docker", &["info"]) {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let test_host = match TestHost::create() {
        Ok(host) => host,
        Err(reason) => return skip(&format!("no test host: {reason}")),
    };
    let listen = format!("{}:0", test_host.addr);
    // Access control on: the engine logs in over verified TLS and pushes with its token.
    let mut b = Berth::new(&["--tls", "auto"], &[("BERTH_AUTH__ENABLED", "true")]).wrapped(&[
        "ip",
        "netns",
        "exec",
        &test_host.ns,
    ]);
    b.try_spawn(&listen).unwrap();
    let host = b.addr.clone();
    assert!(host.starts_with(TEST_HOST_ADDR), "{host}");
    let image = format!("{host}/tls/verified:1");
    let id = build_image(&image);

    // Without the CA the engine refuses the registry's certificate.
    let refused = run_cmd("docker", &["push", &image], DOCKER_TIMEOUT);
    let text = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "pushed without the CA: {text}");
    assert!(
        text.contains("x509") || text.contains("certificate"),
        "refused for another reason: {text}"
    );

    // With the cluster CA as certs.d/HOST:PORT/ca.crt it pushes and pulls.
    let ca = std::fs::read_to_string(b.data_dir().join("tls/ca.pem")).unwrap();
    let installed = match DockerCa::install(&host, &ca) {
        Ok(installed) => installed,
        Err(reason) => {
            let _ = run_cmd("docker", &["rmi", "-f", &image, &id], DOCKER_TIMEOUT);
            return skip(&reason);
        }
    };
    let refused = run_cmd("docker", &["push", &image], DOCKER_TIMEOUT);
    assert!(!refused.status.success(), "pushed without logging in");
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    let login = run_ok(
        "docker",
        &[
            "--config",
            cfg,
            "login",
            &host,
            "-u",
            "admin",
            "-p",
            support::ADMIN_PASSWORD,
        ],
        DOCKER_TIMEOUT,
    );
    assert!(login.contains("Login Succeeded"), "{login}");
    run_ok("docker", &["--config", cfg, "push", &image], DOCKER_TIMEOUT);
    let _ = run_cmd("docker", &["rmi", "-f", &image, &id], DOCKER_TIMEOUT);
    run_ok("docker", &["--config", cfg, "pull", &image], DOCKER_TIMEOUT);
    assert_eq!(image_id(&image), id);
    let _ = run_cmd("docker", &["rmi", "-f", &image, &id], DOCKER_TIMEOUT);
    drop(installed);
    b.kill();
    drop(test_host);
}
