#!/usr/bin/env bash
# Builds the Berth container image: compiles a statically linked `berth` (glibc with
# crt-static: the musl target cannot be fetched here), stages it with what an empty base image
# needs (CA roots for S3 over HTTPS, a passwd entry, an empty data directory) into a build
# context, and runs `docker build` on packaging/Dockerfile, which is `FROM scratch` only, so
# the build needs no base image from a registry.
#
#   packaging/build-image.sh [TAG]      # default tag: berth:latest
#
# Honours CARGO_TARGET_DIR. Prints the image id on its last line.
set -euo pipefail

tag="${1:-berth:latest}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target=x86_64-unknown-linux-gnu
uid=65532

echo "== building a static berth (release, $target, crt-static)" >&2
# --target keeps RUSTFLAGS away from build scripts and proc macros, which cannot be static.
binary="$(
  cd "$root" &&
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release --locked --target "$target" --bin berth \
        --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
)"
[ -x "$binary" ] || { echo "cargo did not report the berth executable" >&2; exit 1; }
# No shared library to load: an empty base image has none (`ldd` calls a static-pie binary
# "statically linked" and succeeds, so ask the ELF header instead).
if readelf -d "$binary" | grep -q '(NEEDED)'; then
  echo "$binary needs shared libraries; a FROM scratch image cannot run it" >&2
  exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$root/packaging/Dockerfile" "$context/Dockerfile"
cp "$binary" "$context/berth"
strip --strip-debug "$context/berth" 2>/dev/null || true
# object_store's S3 client trusts the system's roots (rustls-platform-verifier): give it the
# host's bundle, the one file it looks for on Linux.
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
printf 'berth:x:%d:%d:berth:/data:/nonexistent\n' "$uid" "$uid" >"$context/passwd"
printf 'berth:x:%d:\n' "$uid" >"$context/group"
mkdir "$context/data"

echo "== docker build -t $tag" >&2
# The classic builder: BuildKit needs the buildx plugin, which the Docker packages here lack.
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" >&2
docker image inspect --format '{{.Id}}' "$tag"
