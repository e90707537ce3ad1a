//! The real Docker engine pushing to and pulling from Berth: many layers, a 200 MiB layer
//! of random bytes, an empty layer, shared layers, nested names, a 128-character tag,
//! re-pushes, cross-repository mounts, pulls by tag and by digest, and a push interrupted
//! by a registry crash and retried.

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use support::{external_tool, run_cmd, run_ok, Berth};

/// One Docker scenario at a time: they share the engine and two cores.
static SERIAL: Mutex<()> = Mutex::new(());
const LONG: Duration = Duration::from_secs(600);

fn docker(args: &[&str]) -> String {
    run_ok("docker", args, LONG)
}

fn docker_available() -> bool {
    external_tool("docker", &["info"])
}

/// Writes `len` pseudo-random bytes (random enough that no compression helps).
fn random_file(path: &Path, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64 ^ std::process::id() as u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

/// `docker build` of `FROM <from>` plus one `COPY` per file, with the classic builder
/// (no BuildKit needed, nothing pulled: `FROM scratch` or a local image).
fn build(dir: &Path, tag: &str, from: &str, files: &[&str]) {
    let mut dockerfile = format!("FROM {from}\n");
    for f in files {
        dockerfile.push_str(&format!("COPY {f} /{f}\n"));
    }
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let out = std::process::Command::new("docker")
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

fn repo_digest(reference: &str) -> String {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        reference,
    ]);
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    out.lines()
        .find(|l| l.starts_with(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("no repo digest for {reference} in {out}"))
        .to_owned()
}

fn remove_images(refs: &[&str]) {
    for r in refs {
        let _ = run_cmd("docker", &["rmi", "-f", r], LONG);
    }
}

#[test]
fn docker_pushes_and_pulls_images_through_berth() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let b = Berth::start();
    let host = format!("localhost:{}", b.addr.rsplit_once(':').unwrap().1);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path();
    random_file(&ctx.join("big.bin"), 200 * 1024 * 1024);
    random_file(&ctx.join("small.bin"), 300 * 1024);
    std::fs::write(ctx.join("config.txt"), "hello berth\n").unwrap();
    std::fs::write(ctx.join("extra.txt"), "only in the second image\n").unwrap();

    let web = format!("{host}/team/app/web:1.0-rc.1");
    let long_tag = "t".repeat(64) + &"0123456789abcdef".repeat(4);
    assert_eq!(long_tag.len(), 128);
    let api = format!("{host}/team/app/api:{long_tag}");
    let empty = format!("{host}/team/empty:latest");
    let mounted = format!("{host}/other/copy:v1");

    // Several layers, one of 200 MiB; a second image sharing them; an empty layer.
    build(
        ctx,
        &web,
        "scratch",
        &["big.bin", "small.bin", "config.txt"],
    );
    build(ctx, &api, &web, &["extra.txt"]);
    let empty_tar = ctx.join("empty.tar");
    run_ok(
        "tar",
        &[
            "cf",
            empty_tar.to_str().unwrap(),
            "--files-from",
            "/dev/null",
        ],
        LONG,
    );
    docker(&["import", empty_tar.to_str().unwrap(), &empty]);

    for image in [&web, &api, &empty] {
        docker(&["push", image]);
    }
    // Every layer exists now: a second push uploads nothing.
    let again = docker(&["push", &web]);
    assert!(again.contains("Layer already exists"), "{again}");
    // The API image shares the web image's layers: those were never uploaded twice.
    // A push to another repository mounts the layers instead of uploading them.
    docker(&["tag", &web, &mounted]);
    let mount = docker(&["push", &mounted]);
    assert!(mount.contains("Mounted from team/app/"), "{mount}");

    let ids: Vec<(String, String, String)> = [&web, &api, &empty, &mounted]
        .iter()
        .map(|r| (r.to_string(), image_id(r), repo_digest(r)))
        .collect();

    // Remove everything locally, then pull by tag and compare image ids.
    for (r, id, _) in &ids {
        remove_images(&[r, id]);
    }
    for (r, id, _) in &ids {
        docker(&["pull", r]);
        assert_eq!(&image_id(r), id, "pull by tag {r}");
    }
    // And by digest.
    for (r, id, _) in &ids {
        remove_images(&[r, id]);
    }
    for (_, id, by_digest) in &ids {
        docker(&["pull", by_digest]);
        assert_eq!(&image_id(by_digest), id, "pull by digest {by_digest}");
    }
    for (r, id, d) in &ids {
        remove_images(&[r, d, id]);
    }
}

#[test]
fn an_interrupted_docker_push_is_retried_successfully() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut b = Berth::start();
    let host = format!("localhost:{}", b.addr.rsplit_once(':').unwrap().1);
    let work = tempfile::tempdir().unwrap();
    random_file(&work.path().join("big.bin"), 256 * 1024 * 1024);
    let image = format!("{host}/retry/me:1");
    build(work.path(), &image, "scratch", &["big.bin"]);
    let id = image_id(&image);

    let mut push = std::process::Command::new("docker")
        .args(["push", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the upload is well under way, then cut it off by killing the
    // registry (SIGKILL) and starting it again on the same data and port.
    let uploads = b.storage_dir().join("uploads");
    let mut interrupted = false;
    for _ in 0..1200 {
        // Sessions keep their bytes in `uploads/<id>.data`.
        let received: u64 = std::fs::read_dir(&uploads)
            .map(|files| {
                files
                    .flatten()
                    .filter(|f| f.path().extension().is_some_and(|e| e == "data"))
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if received > 16 * 1024 * 1024 {
            b.restart();
            interrupted = true;
            break;
        }
        if push.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        interrupted,
        "the push finished before it could be interrupted"
    );
    // The engine may retry on its own; either way the first push ends, bounded.
    for _ in 0..1200 {
        if push.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = push.kill();
    let _ = push.wait();

    // A retried push completes, and the image pulls back intact.
    docker(&["push", &image]);
    remove_images(&[&image, &id]);
    docker(&["pull", &image]);
    assert_eq!(image_id(&image), id);
    remove_images(&[&image, &id]);
}

/// `docker login` on one replica of a three-replica cluster with access control on: the
/// engine stores the refresh token, pushes through token auth, and pulls through the other
/// two replicas with that same refresh token (single sign-on); without it, nothing.
#[test]
fn docker_logs_in_once_and_pulls_through_every_replica() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = support::cluster::Cluster::start_with_env(3, &[("BERTH_AUTH__ENABLED", "true")]);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let (ok, out, err) = support::cluster::berth_cli_env(
        &["user", "--url", &a.url, "add", "alice"],
        &[("BERTH_NEW_PASSWORD", "alice-password")],
    );
    assert!(ok, "{out}{err}");

    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    let out = docker(&[
        "--config",
        cfg,
        "login",
        &a.addr,
        "-u",
        "alice",
        "-p",
        "alice-password",
    ]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.path().join("config.json")).unwrap()).unwrap();
    let entry = stored["auths"][&a.addr].clone();
    assert!(
        entry["identitytoken"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "docker stored no refresh token: {stored}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"single sign-on").unwrap();
    let tag_a = format!("{}/alice/app:v1", a.addr);
    build(dir.path(), &tag_a, "scratch", &["hello.txt"]);
    let id = image_id(&tag_a);
    docker(&["--config", cfg, "push", &tag_a]);

    // The same stored identity for the other replicas: their token endpoints accept the
    // refresh token that the first one issued.
    let mut auths = stored["auths"].clone();
    for node in [b, c] {
        auths[&node.addr] = entry.clone();
    }
    std::fs::write(
        config.path().join("config.json"),
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
    )
    .unwrap();
    for node in [b, c] {
        let tag = format!("{}/alice/app:v1", node.addr);
        remove_images(&[&tag]);
        docker(&["--config", cfg, "pull", &tag]);
        assert_eq!(image_id(&tag), id, "same image through {}", node.addr);
        remove_images(&[&tag]);
    }

    // Without credentials the private repository stays shut.
    let empty = tempfile::tempdir().unwrap();
    let tag_c = format!("{}/alice/app:v1", c.addr);
    let out = run_cmd(
        "docker",
        &["--config", empty.path().to_str().unwrap(), "pull", &tag_c],
        LONG,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    remove_images(&[&tag_a]);
}

/// Three replicas on S3 (a real moto server): the Docker engine pushes an image with a
/// 200 MiB layer through one replica and pulls it through another; each replica's peak
/// memory stays bounded, whatever the layer size.
#[test]
fn docker_pushes_a_200_mib_layer_to_three_replicas_on_s3() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = support::moto::Moto::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bucket = runtime.block_on(moto.bucket());
    let env = moto.berth_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let url = format!("s3://{bucket}/registry");
    let cluster = support::cluster::Cluster::start_on(3, Some(&url), &env);
    let (a, c) = (&cluster.nodes[0], &cluster.nodes[2]);

    let dir = tempfile::tempdir().unwrap();
    random_file(&dir.path().join("big.bin"), 200 * 1024 * 1024);
    let tag_a = format!("{}/s3/big:1", a.addr);
    build(dir.path(), &tag_a, "scratch", &["big.bin"]);
    let id = image_id(&tag_a);
    docker(&["push", &tag_a]);
    let tag_c = format!("{}/s3/big:1", c.addr);
    remove_images(&[&tag_a, &tag_c]);
    docker(&["pull", &tag_c]);
    assert_eq!(image_id(&tag_c), id);
    remove_images(&[&tag_c]);

    let keys = runtime.block_on(moto.keys(&bucket, "registry/blobs/"));
    assert!(!keys.is_empty(), "no blob landed in the bucket");
    for node in &cluster.nodes {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        eprintln!(
            "replica {} peak memory: {} MiB",
            node.replica_id,
            peak_kib / 1024
        );
        assert!(
            peak_kib < 200 * 1024,
            "replica {} peaked at {peak_kib} KiB",
            node.replica_id
        );
    }
}
