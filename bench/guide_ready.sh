#!/bin/bash
# Baseline of bench/run's readiness rows: the guide's way of waiting (bash loops that
# probe with curl and sleep 100 ms; only HTTP 200 counts) on the same scenario as
# bench/readiness.lua — one emulator with `--fault listen-delay=1`, so each listener
# (onboard, then runtime after /finish) opens 1 s after the emulator starts it.
# Prints "<onboard ms> <runtime ms>": from the listener opening (the emulator's
# "... mode: listening on" log line, millisecond timestamps) to the loop returning.
# The emulator uses auth_api.type = "dev" (allows everything): no auth server needed
# to bootstrap, and it does not change when a listener opens.
# Usage: bench/guide_ready.sh [KMSRUN]
set -euo pipefail
KMSRUN=${1:-${KMSRUN:-build/kmsrun}}
KMSRUN=$(realpath "$KMSRUN")
W=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "guide_ready: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }

mkdir -p "$W/certs"
cat >"$W/kms.toml" <<EOF
[core]
cert_dir = "$W/certs"
[core.auth_api]
type = "dev"
[core.image]
verify = false
[core.onboard]
address = "127.0.0.1"
auto_bootstrap_domain = ""
enabled = true
port = 0
[rpc]
address = "127.0.0.1"
port = 0
[rpc.tls]
certs = "$W/certs/rpc.crt"
key = "$W/certs/rpc.key"
[rpc.tls.mutual]
ca_certs = "$W/certs/tmp-ca.crt"
mandatory = false
EOF
(cd "$W" && exec "$KMSRUN" serve kms-sim -c kms.toml --fault listen-delay=1 >stdout 2>log) &
pid=$!

wait_200() { # the guide's loop: probe, and sleep 100 ms until HTTP 200
  for _ in $(seq 150); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$@" || true)" = 200 ] && return 0
    sleep 0.1
  done
  fail "no HTTP 200 from $* within 15 s"
}
opened() { # epoch of the emulator's "<mode> mode: listening on" log line
  local ts
  ts=$(sed -n "s/^\\([^ ]*\\) .* $1 mode: listening on .*/\\1/p" "$W/log" | head -1)
  [ -n "$ts" ] || fail "no '$1 mode: listening on' line in the emulator log"
  date -d "$ts" +%s.%N
}

# Onboard: the port is chosen at listen time, so poll the announcement, then probe.
url=
for _ in $(seq 150); do
  url=$(sed -n 's|^listening on \(http://[^ ]*\)$|\1|p' "$W/stdout" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || fail "the emulator did not announce its onboard listener"
wait_200 -X POST "$url/prpc/Onboard.GetAttestationInfo?json" -H 'Content-Type: application/json' -d '{}'
onboard_ready=$(now)

[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/prpc/Onboard.Bootstrap?json" \
  -H 'Content-Type: application/json' -d '{"domain":"bench.example.test"}')" = 200 ] || fail "bootstrap"
[ "$(curl -sf "$url/finish")" = OK ] || fail "GET /finish"
# Runtime: same port (rpc.port = onboard.port = 0), TLS.
wait_200 -X POST "${url/http:/https:}/prpc/KMS.GetMeta?json" -H 'Content-Type: application/json' -d '{}'
runtime_ready=$(now)

echo "$(opened onboard) $onboard_ready $(opened runtime) $runtime_ready" |
  awk '{ printf "%.1f %.1f\n", ($2 - $1) * 1000, ($4 - $3) * 1000 }'
