#!/usr/bin/env bash
# The machine's physical limits that bound the load benchmark (issue 9), printed as a
# Markdown table: sha256 speed of one core, loopback TCP throughput on one and two streams,
# disk write speed with fsync, and synced 4 KiB appends per second. Loopback only; needs
# openssl, python3 and dd. Run it on a quiet machine, like the benchmark.
#
# Usage: benches/limits.sh [DIR]
#   DIR: where to write test files (default: a new temp dir under ${TMPDIR:-/tmp}, the
#   disk the benchmark's servers write to); it is removed afterwards if we created it.
set -euo pipefail

if [[ $# -ge 1 ]]; then
    dir=$(mktemp -d "$1/limits.XXXXXX")
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/limits.XXXXXX")
fi
trap 'rm -rf "$dir"' EXIT
secs=${LIMITS_SECONDS:-3}
dd_mib=${LIMITS_DD_MIB:-1024}

# sha256, one core: openssl uses the SHA extensions, as the sha2 crate does.
sha=$(openssl speed -seconds "$secs" -bytes 1048576 -evp sha256 2>/dev/null |
    awk '$1 == "sha256" { sub(/k$/, "", $2); printf "%.0f", $2 / 1000 }')

# Loopback TCP: each stream is a sender and a receiver process; MB/s at the receivers.
tcp() {
    python3 - "$1" "$secs" <<'EOF'
import os, socket, sys, time
streams, secs = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(streams)
port = srv.getsockname()[1]
r, w = os.pipe()
kids = []
for _ in range(streams):
    pid = os.fork()
    if pid == 0:  # sender
        s = socket.create_connection(("127.0.0.1", port))
        buf = memoryview(bytearray(1 << 20))
        end = time.monotonic() + secs
        while time.monotonic() < end:
            s.sendall(buf)
        s.close()
        os._exit(0)
    kids.append(pid)
    conn, _ = srv.accept()
    pid = os.fork()
    if pid == 0:  # receiver: bytes and seconds from first to last byte
        buf = bytearray(1 << 20)
        total, start = 0, None
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            if start is None:
                start = time.monotonic()
            total += n
        os.write(w, f"{total} {time.monotonic() - start}\n".encode())
        os._exit(0)
    kids.append(pid)
    conn.close()
for pid in kids:
    os.waitpid(pid, 0)
os.close(w)
lines = os.read(r, 4096).decode().split()
total = sum(int(x) for x in lines[0::2])
elapsed = max(float(x) for x in lines[1::2])
print(f"{total / elapsed / 1e6:.0f}")
EOF
}
tcp1=$(tcp 1)
tcp2=$(tcp 2)

# Sequential write with one fsync at the end (what a blob commit costs at best).
dd_line=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$dd_mib" conv=fsync 2>&1 | tail -1)
dd_secs=$(awk -F', ' '{ split($3, a, " "); print a[1] }' <<<"$dd_line")
disk=$(awk -v m="$dd_mib" -v s="$dd_secs" 'BEGIN { printf "%.0f", m * 1048576 / s / 1e6 }')
rm -f "$dir/dd.bin"

# Synced 4 KiB appends: write + fdatasync in a loop (a log store's commit).
appends=$(python3 - "$dir/append.bin" "$secs" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
block, n = b"\0" * 4096, 0
start = time.monotonic()
end = start + float(sys.argv[2])
while time.monotonic() < end and n < 1_000_000:
    os.write(fd, block)
    os.fdatasync(fd)
    n += 1
print(f"{n / (time.monotonic() - start):.0f}")
EOF
)

cat <<EOF
| limit | value |
|---|---:|
| sha256, one core (openssl speed -evp sha256, 1 MiB blocks) | $sha MB/s |
| loopback TCP, 1 stream | $tcp1 MB/s |
| loopback TCP, 2 streams (aggregate) | $tcp2 MB/s |
| disk write, $dd_mib MiB then fsync (dd conv=fsync) | $disk MB/s |
| synced 4 KiB appends (write + fdatasync) | $appends /s |

MB = 10^6 bytes. Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average at end: $(cut -d' ' -f1-3 /proc/loadavg).
EOF
