#!/bin/bash
# The baseline of bench/run: runbooks/self_auth.lua's flow done the way the test guide
# (shared/seeds/000_bcfdee5aa4e79d81.txt) does it — bash, curl, jq, heredoc policy
# templates instantiated with sed and switched with cp, readiness loops that sleep
# 100 ms between probes — against the same emulator (`kmsrun serve kms-sim`) and the same
# auth server (`kmsrun serve auth`, a drop-in for auth-simple that re-reads its policy file
# on every request), as separate processes.
#
# It does the same work as the runbook: 2 auth servers and 3 emulators (kms-src, kms-dst,
# and kms-noattest for case 5 — the runbook's topology), attestation capture, the five
# cases' RPCs with the same expected outcomes (error prefixes, required fields, the k256
# key inherited by kms-dst), every response saved, a tar.gz of the results, then stops
# everything and waits for it to exit. Any unexpected outcome exits 1 with the reason.
# Unlike the guide it does not pretty-print each response with `jq .` (display only),
# which would only make this baseline slower.
#
# Usage: bench/guide_flow.sh [KMSRUN]     (default $KMSRUN, else build/kmsrun)
set -euo pipefail
KMSRUN=${1:-${KMSRUN:-build/kmsrun}}
KMSRUN=$(realpath "$KMSRUN")
W=$(mktemp -d /tmp/kms-self-auth.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "guide_flow: FAIL: $*" >&2; exit 1; }

SRC_DOMAIN=kms-src.example.test
DST_DOMAIN=kms-dst.example.test

# --- auth servers (deny-all placeholder policies, as in the guide) -------------------
for side in src dst; do
  cat >"$W/auth-$side.json" <<'EOF'
{
  "osImages": [],
  "gatewayAppId": "any",
  "kms": {
    "mrAggregated": [],
    "devices": [],
    "allowAnyDevice": true
  },
  "apps": {}
}
EOF
  "$KMSRUN" serve auth --config "$W/auth-$side.json" --port 0 >"$W/auth-$side.out" 2>"$W/auth-$side.log" &
  pids+=($!)
done

# The announced URL of a server (its port is chosen by the kernel): poll its stdout.
announced() { # $1: stdout file, $2: scheme; prints the URL once it is there
  local url
  for _ in $(seq 150); do
    url=$(sed -n "s|^listening on \\($2://[^ ]*\\)$|\\1|p" "$1" | head -1)
    [ -n "$url" ] && { echo "$url"; return 0; }
    sleep 0.1
  done
  fail "no 'listening on $2://' line in $1"
}

# Readiness loop: until the probe answers HTTP 200, sleeping 100 ms between probes.
wait_200() { # $1: what, then the curl arguments of the probe
  local what=$1; shift
  for _ in $(seq 150); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$@" || true)" = 200 ] && return 0
    sleep 0.1
  done
  fail "$what did not answer HTTP 200 within 15 s"
}

AUTH_SRC=$(announced "$W/auth-src.out" http)
AUTH_DST=$(announced "$W/auth-dst.out" http)
for u in "$AUTH_SRC" "$AUTH_DST"; do
  wait_200 "auth server $u" "$u/"
  curl -sf "$u/" | jq -e '.status == "ok"' >/dev/null || fail "auth server $u health"
done

# --- the KMS instances: onboard mode, webhook auth, rpc port = onboard port ----------
start_kms() { # $1: name, $2: auth URL, $3...: extra emulator flags
  local name=$1 auth=$2; shift 2
  mkdir -p "$W/$name/certs"
  cat >"$W/$name/kms.toml" <<EOF
[core]
attest_rpc_cert = true
cert_dir = "$W/$name/certs"
enforce_self_authorization = true
site_name = "$name"

[core.auth_api]
type = "webhook"

[core.auth_api.webhook]
url = "$auth"

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
certs = "$W/$name/certs/rpc.crt"
key = "$W/$name/certs/rpc.key"

[rpc.tls.mutual]
ca_certs = "$W/$name/certs/tmp-ca.crt"
mandatory = false
EOF
  (cd "$W/$name" && exec "$KMSRUN" serve kms-sim -c kms.toml --image dstack-0.5.7-sim \
      --salt "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" "$@" >stdout 2>"$W/$name.log") &
  pids+=($!)
}
start_kms kms-src "$AUTH_SRC"
start_kms kms-dst "$AUTH_DST"
start_kms kms-noattest "$AUTH_SRC" --no-attestation

KMS_SRC_ONBOARD=$(announced "$W/kms-src/stdout" http)
KMS_DST_ONBOARD=$(announced "$W/kms-dst/stdout" http)
KMS_BARE_ONBOARD=$(announced "$W/kms-noattest/stdout" http)
# The runtime TLS listener reuses the onboard port (rpc.port = onboard.port = 0).
KMS_SRC_RUNTIME=${KMS_SRC_ONBOARD/http:/https:}
KMS_DST_RUNTIME=${KMS_DST_ONBOARD/http:/https:}

probe_onboard() { # the guide's probe: POST Onboard.GetAttestationInfo, but only 200 counts
  wait_200 "$1 onboard endpoint" -X POST "$2/prpc/Onboard.GetAttestationInfo?json" \
    -H 'Content-Type: application/json' -d '{}'
}
probe_onboard kms-src "$KMS_SRC_ONBOARD"
probe_onboard kms-dst "$KMS_DST_ONBOARD"
# An instance without attestation can never answer GetAttestationInfo with 200.
wait_200 "kms-noattest onboard endpoint" "$KMS_BARE_ONBOARD/health"

# --- RPC helpers ---------------------------------------------------------------------
# rpc OUT URL [BODY]: POST a prpc call, save the answer to $W/OUT.json, set $STATUS.
rpc() {
  local out=$1 url=$2 body=${3:-'{}'}
  STATUS=$(curl -sk -o "$W/$out.json" -w '%{http_code}' -X POST "$url" \
    -H 'Content-Type: application/json' -d "$body") || fail "$out: transport failure (curl exit $?)"
}
# rpc_get OUT URL: the guide's GET form for runtime KMS.* calls without arguments.
rpc_get() {
  local out=$1 url=$2
  STATUS=$(curl -sk -o "$W/$out.json" -w '%{http_code}' "$url") || fail "$out: transport failure (curl exit $?)"
}
expect_error() { # OUT PREFIX: HTTP 400 with an .error starting with PREFIX
  [ "$STATUS" = 400 ] || fail "$1: expected HTTP 400, got $STATUS: $(head -c 400 "$W/$1.json")"
  jq -e --arg p "$2" '(.error | type == "string") and (.error | startswith($p))' "$W/$1.json" >/dev/null \
    || fail "$1: expected an error starting with '$2', got: $(head -c 400 "$W/$1.json")"
}
expect_ok() { # OUT FIELD...: HTTP 200, no .error, every FIELD present and non-empty
  local out=$1; shift
  [ "$STATUS" = 200 ] || fail "$out: expected HTTP 200, got $STATUS: $(head -c 400 "$W/$out.json")"
  jq -e '(.error == null) and ([$ARGS.positional[] as $f | .[$f] | . != null and . != ""] | all)' \
    --args "$@" <"$W/$out.json" >/dev/null || fail "$out: expected fields $* in $(head -c 400 "$W/$out.json")"
}

# --- shared setup: attestation and policy files ----------------------------------------
rpc kms-src-attestation "$KMS_SRC_ONBOARD/prpc/Onboard.GetAttestationInfo?json"
expect_ok kms-src-attestation device_id mr_aggregated os_image_hash
rpc kms-dst-attestation "$KMS_DST_ONBOARD/prpc/Onboard.GetAttestationInfo?json"
expect_ok kms-dst-attestation device_id mr_aggregated os_image_hash
SRC_OS=$(jq -r '.os_image_hash' "$W/kms-src-attestation.json")
SRC_MR=$(jq -r '.mr_aggregated' "$W/kms-src-attestation.json")
SRC_DEV=$(jq -r '.device_id' "$W/kms-src-attestation.json")
DST_OS=$(jq -r '.os_image_hash' "$W/kms-dst-attestation.json")
DST_MR=$(jq -r '.mr_aggregated' "$W/kms-dst-attestation.json")
DST_DEV=$(jq -r '.device_id' "$W/kms-dst-attestation.json")
: "$SRC_DEV" "$DST_DEV" # captured as in the guide; the policies allow any device

cat >"$W/deny-by-mr.json" <<'EOF'
{
  "osImages": ["0xREPLACE_OS"],
  "gatewayAppId": "any",
  "kms": {
    "mrAggregated": ["0x0000000000000000000000000000000000000000000000000000000000000000"],
    "devices": [],
    "allowAnyDevice": true
  },
  "apps": {}
}
EOF
cat >"$W/allow-single.json" <<'EOF'
{
  "osImages": ["0xREPLACE_OS"],
  "gatewayAppId": "any",
  "kms": {
    "mrAggregated": ["0xREPLACE_MR"],
    "devices": [],
    "allowAnyDevice": true
  },
  "apps": {}
}
EOF
cat >"$W/allow-src-and-dst.json" <<'EOF'
{
  "osImages": ["0xREPLACE_SRC_OS", "0xREPLACE_DST_OS"],
  "gatewayAppId": "any",
  "kms": {
    "mrAggregated": ["0xREPLACE_SRC_MR", "0xREPLACE_DST_MR"],
    "devices": [],
    "allowAnyDevice": true
  },
  "apps": {}
}
EOF
sed "s/REPLACE_OS/$SRC_OS/g; s/REPLACE_MR/$SRC_MR/g" "$W/allow-single.json" >"$W/auth-src-allow-self.json"
sed "s/REPLACE_OS/$SRC_OS/g" "$W/deny-by-mr.json" >"$W/auth-src-deny-self.json"
sed "s/REPLACE_SRC_OS/$SRC_OS/g; s/REPLACE_DST_OS/$DST_OS/g; s/REPLACE_SRC_MR/$SRC_MR/g; s/REPLACE_DST_MR/$DST_MR/g" \
  "$W/allow-src-and-dst.json" >"$W/auth-src-allow-both.json"
sed "s/REPLACE_OS/$SRC_OS/g; s/REPLACE_MR/$SRC_MR/g" "$W/allow-single.json" >"$W/auth-dst-allow-src.json"
sed "s/REPLACE_OS/$SRC_OS/g" "$W/deny-by-mr.json" >"$W/auth-dst-deny-src.json"

# --- case 1: bootstrap is denied when the KMS itself is not allowed ---------------------
cp "$W/auth-src-deny-self.json" "$W/auth-src.json"
rpc bootstrap-src-denied "$KMS_SRC_ONBOARD/prpc/Onboard.Bootstrap?json" "{\"domain\":\"$SRC_DOMAIN\"}"
expect_error bootstrap-src-denied "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed"

# --- case 2: bootstrap succeeds after the KMS is whitelisted ----------------------------
cp "$W/auth-src-allow-self.json" "$W/auth-src.json"
rpc bootstrap-src-allowed "$KMS_SRC_ONBOARD/prpc/Onboard.Bootstrap?json" "{\"domain\":\"$SRC_DOMAIN\"}"
expect_ok bootstrap-src-allowed ca_pubkey k256_pubkey attestation
[ "$(curl -sf "$KMS_SRC_ONBOARD/finish")" = OK ] || fail "kms-src GET /finish did not answer OK"
wait_200 "kms-src runtime endpoint" -X POST "$KMS_SRC_RUNTIME/prpc/KMS.GetMeta?json" \
  -H 'Content-Type: application/json' -d '{}'
rpc_get kms-src-meta "$KMS_SRC_RUNTIME/prpc/KMS.GetMeta?json"
expect_ok kms-src-meta ca_cert k256_pubkey

# --- case 3: the receiver rejects onboarding from a denied source KMS ------------------
cp "$W/auth-src-allow-both.json" "$W/auth-src.json"
cp "$W/auth-dst-deny-src.json" "$W/auth-dst.json"
ONBOARD="{\"source_url\":\"$KMS_SRC_RUNTIME/prpc\",\"domain\":\"$DST_DOMAIN\"}"
rpc onboard-dst-denied "$KMS_DST_ONBOARD/prpc/Onboard.Onboard?json" "$ONBOARD"
expect_error onboard-dst-denied "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed"
cp "$W/auth-dst-allow-src.json" "$W/auth-dst.json"
rpc onboard-dst-allowed "$KMS_DST_ONBOARD/prpc/Onboard.Onboard?json" "$ONBOARD"
expect_ok onboard-dst-allowed k256_pubkey
[ "$(curl -sf "$KMS_DST_ONBOARD/finish")" = OK ] || fail "kms-dst GET /finish did not answer OK"
wait_200 "kms-dst runtime endpoint" -X POST "$KMS_DST_RUNTIME/prpc/KMS.GetMeta?json" \
  -H 'Content-Type: application/json' -d '{}'
rpc_get kms-dst-meta "$KMS_DST_RUNTIME/prpc/KMS.GetMeta?json"
expect_ok kms-dst-meta k256_pubkey
rpc_get kms-src-meta-2 "$KMS_SRC_RUNTIME/prpc/KMS.GetMeta?json"
expect_ok kms-src-meta-2 k256_pubkey
SRC_K256=$(jq -r .k256_pubkey "$W/kms-src-meta-2.json")
[ "$(jq -r .k256_pubkey "$W/onboard-dst-allowed.json")" = "$SRC_K256" ] || fail "Onboard did not return kms-src's k256 key"
[ "$(jq -r .k256_pubkey "$W/kms-dst-meta.json")" = "$SRC_K256" ] || fail "kms-dst does not serve kms-src's k256 key"

# --- case 4: trusted RPCs fail once the running KMS is no longer allowed ----------------
cp "$W/auth-src-allow-both.json" "$W/auth-src.json"
rpc_get get-temp-ca-allowed "$KMS_SRC_RUNTIME/prpc/KMS.GetTempCaCert?json"
expect_ok get-temp-ca-allowed temp_ca_cert ca_cert
rpc get-kms-key-unattested "$KMS_SRC_RUNTIME/prpc/KMS.GetKmsKey?json" '{"vm_config":""}'
expect_error get-kms-key-unattested "No attestation provided"
cp "$W/auth-src-deny-self.json" "$W/auth-src.json"
SELF_DENIED="KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"
rpc_get get-temp-ca-denied "$KMS_SRC_RUNTIME/prpc/KMS.GetTempCaCert?json"
expect_error get-temp-ca-denied "$SELF_DENIED"
rpc get-kms-key-denied "$KMS_SRC_RUNTIME/prpc/KMS.GetKmsKey?json" '{"vm_config":""}'
expect_error get-kms-key-denied "$SELF_DENIED"
rpc get-app-key-denied "$KMS_SRC_RUNTIME/prpc/KMS.GetAppKey?json" '{"api_version":1,"vm_config":""}'
expect_error get-app-key-denied "$SELF_DENIED"
rpc sign-cert-denied "$KMS_SRC_RUNTIME/prpc/KMS.SignCert?json" '{"api_version":2,"csr":"","signature":"","vm_config":""}'
expect_error sign-cert-denied "$SELF_DENIED"
rpc_get kms-src-meta-3 "$KMS_SRC_RUNTIME/prpc/KMS.GetMeta?json"
expect_ok kms-src-meta-3

# --- case 5: there is no no-quote mode -----------------------------------------------------
rpc bootstrap-noattest "$KMS_BARE_ONBOARD/prpc/Onboard.Bootstrap?json" "{\"domain\":\"$SRC_DOMAIN\"}"
expect_error bootstrap-noattest "KMS is not allowed to bootstrap: failed to build local KMS boot info: Failed to get local KMS attestation: "
rpc attestation-noattest "$KMS_BARE_ONBOARD/prpc/Onboard.GetAttestationInfo?json"
expect_error attestation-noattest "Failed to get attestation: "
rpc_get kms-src-meta-4 "$KMS_SRC_RUNTIME/prpc/KMS.GetMeta?json"
jq -e '(.bootstrap_info | type == "object") and ((.bootstrap_info.attestation // "") | length > 0)' \
  "$W/kms-src-meta-4.json" >/dev/null || fail "kms-src's bootstrap_info carries no attestation"

# --- evidence and cleanup, as in the guide ------------------------------------------------
tar czf "$W.tar.gz" -C "$(dirname "$W")" "$(basename "$W")"
rm -f "$W.tar.gz"
echo "guide_flow: all five cases behaved as expected"
