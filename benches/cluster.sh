#!/usr/bin/env bash
# Cluster figures (issue 5): manifest PUT throughput and latency on one replica and on three
# (through the leader and through a follower, which forwards), tag GET throughput on a
# follower, and the time from killing the leader to the first successful write.
#
# Usage: benches/cluster.sh [OUT.md]   (builds berth in release; uses the load benchmark's
# scenarios 5 and 6 against replicas this script starts on 127.0.0.1 with default timings).
# Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}

cargo build --release --bin berth >&2
berth=$PWD/target/release/berth
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Access control off, as the load benchmark runs Distribution; the admin API still needs
# the administrator, whose password is set here.
export BERTH_ADMIN_PASSWORD=bench-admin BERTH_PASSWORD=bench-admin RUST_LOG=warn BERTH_AUTH__ENABLED=false

# start NAME [serve flags...]: prints "PID URL" once the replica is ready. It runs in a
# subshell (`< <(start ...)`), so the caller records the PID for the clean-up.
start() {
  local name=$1; shift
  "$berth" serve --listen 127.0.0.1:0 --data-dir "$work/$name" --storage-dir "$work/blobs-$cluster" "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  local pid=$!
  for _ in $(seq 1 600); do
    if [ -s "$work/$name.out" ]; then
      local addr
      addr=$(head -1 "$work/$name.out" | sed -E 's/.*"http":"([^"]+)".*/\1/')
      echo "$pid http://$addr"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "replica $name did not start" >&2; exit 1
}

load() { # URL PID SCENARIOS LABEL
  cargo bench --bench load -- --only berth --berth-url "$1" --berth-pid "$2" --scenarios "$3" \
    --out "$work/$4.md" >&2
  { echo "### $4"; echo; cat "$work/$4.md"; echo; } >>"$out"
}

role() { curl -fsS "$1/health" | sed -E 's/.*"role":"([a-z]+)".*/\1/'; }

echo "## Cluster figures ($(date -u +%Y-%m-%d), $(nproc) cores)" >>"$out"
echo >>"$out"

cluster=one
read -r pid1 url1 < <(start one-1)
pids+=("$pid1")
load "$url1" "$pid1" 5 "one replica: manifest PUT"

cluster=three
read -r pa ua < <(start three-1)
pids+=("$pa")
token=$("$berth" join-token --url "$ua")
read -r pb ub < <(start three-2 --join "$ua" --join-token "$token")
pids+=("$pb")
read -r pc uc < <(start three-3 --join "$ua" --join-token "$token")
pids+=("$pc")
leader_url=$ua; leader_pid=$pa; follower_url=$ub; follower_pid=$pb
for pair in "$pa $ua" "$pb $ub" "$pc $uc"; do
  set -- $pair
  if [ "$(role "$2")" = leader ]; then leader_pid=$1; leader_url=$2; fi
done
for pair in "$pa $ua" "$pb $ub" "$pc $uc"; do
  set -- $pair
  if [ "$2" != "$leader_url" ]; then follower_pid=$1; follower_url=$2; fi
done
load "$leader_url" "$leader_pid" 5 "three replicas: manifest PUT through the leader"
load "$follower_url" "$follower_pid" 5 "three replicas: manifest PUT through a follower"
load "$follower_url" "$follower_pid" 6 "three replicas: manifest GET by tag on a follower"

# Failover: a manifest whose blobs exist, PUT through a survivor until it is accepted.
config='{"architecture":"amd64","os":"linux"}'
cdigest=sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
curl -fsS -X POST --data-binary "$config" "$follower_url/v2/failover/app/blobs/uploads/?digest=$cdigest" >/dev/null
manifest() {
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[],"annotations":{"n":"%s"}}' \
    "$cdigest" "${#config}" "$1"
}
put() { # URL N -> HTTP status
  curl -s -o /dev/null -w '%{http_code}' -m 10 -X PUT -H 'content-type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$(manifest "$2")" "$1/v2/failover/app/manifests/t$2" || true
}
[ "$(put "$follower_url" 0)" = 201 ] || { echo "failover warm-up push failed" >&2; exit 1; }
kill -9 "$leader_pid"
killed=$(date +%s%N)
n=1
until [ "$(put "$follower_url" "$n")" = 201 ]; do
  n=$((n + 1))
  [ "$n" -lt 2000 ] || { echo "no write accepted after the leader was killed" >&2; exit 1; }
  sleep 0.01
done
ms=$(( ($(date +%s%N) - killed) / 1000000 ))
{
  echo "### failover"
  echo
  echo "Leader killed with SIGKILL; the first manifest PUT through a survivor was accepted after"
  echo "**${ms} ms** ($n attempts; default timings: heartbeat 250 ms, election timeout 1-2 s)."
  echo
} >>"$out"
