#!/usr/bin/env bash
# Writes the secrets compose.yaml reads, into ./secrets/ beside it (git-ignored) or into
# SECRETS_DIR: random passwords and a join token, and a TLS bundle (a CA and one server
# certificate for the load balancer's and the replicas' names) made with openssl. Files that
# exist are kept, so running it again changes nothing; delete one to make it anew.
#
#   packaging/make-secrets.sh [NAME ...]   # extra DNS names for the server certificate
#
# The directory is private (0700); the files in it are readable by all (0644) because Compose
# mounts them unchanged into containers that run as other users (Berth as 65532, HAProxy as
# its own). Keep ca-key.pem offline: it issues certificates the replicas trust.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${SECRETS_DIR:-$root/secrets}"
umask 077
mkdir -p "$dir/tls"
chmod 0700 "$dir"

random() { openssl rand -hex 24; }

secret() { # NAME VALUE-COMMAND
  local file="$dir/$1"
  if [ ! -s "$file" ]; then
    "$2" >"$file"
    echo "wrote $file" >&2
  fi
  chmod 0644 "$file"
}
secret admin_password random
secret join_token random
secret s3_secret_key random
secret backup_passphrase random

tls="$dir/tls"
if [ ! -s "$tls/cert.pem" ]; then
  names=(localhost berth-1 berth-2 berth-3 "$@")
  san="IP:127.0.0.1"
  for n in "${names[@]}"; do san="$san,DNS:$n"; done
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cat >"$work/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = Berth compose CA
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
  cat >"$work/server.ext" <<CNF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
  if [ ! -s "$dir/ca-key.pem" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem"
    openssl req -x509 -new -config "$work/ca.cnf" -key "$dir/ca-key.pem" -sha256 -days 3650 \
      -out "$tls/ca.pem"
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/key.pem"
  openssl req -new -key "$tls/key.pem" -subj "/CN=berth" -out "$work/server.csr"
  openssl x509 -req -in "$work/server.csr" -CA "$tls/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 365 -sha256 -extfile "$work/server.ext" \
    -out "$tls/cert.pem" 2>/dev/null
  echo "wrote $tls/{ca,cert,key}.pem for ${names[*]} and 127.0.0.1" >&2
fi
chmod 0600 "$dir/ca-key.pem"
chmod 0755 "$tls"
chmod 0644 "$tls/ca.pem" "$tls/cert.pem" "$tls/key.pem"
