#!/bin/bash
# `kmsrun replay OUTDIR` re-checks a recorded run offline: a passing run replays
# as passing; a run broken by an emulator mutation replays with the same failing
# case; an edited transcript is caught (the re-evaluated verdict and the
# manifest). `--curl` turns every recorded RPC into a curl command line (-k for
# https, never -f) that reproduces the call against a live emulator.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
RUNBOOK=$SRC/runbooks/self_auth.lua
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

# replay_json DIR [args]: the replay's JSON result in $WORK/replay.json, exit code in $rcode.
replay_json() {
  "$KMSRUN" replay --json "$@" >"$WORK/replay.json" 2>"$WORK/replay.err"
  rcode=$?
}

# 1. A passing run replays as passing, from the directory and from the archive.
run "self_auth passes on sim" 0 "$KMSRUN" -q --out "$WORK/ok" "$RUNBOOK"
run "replay of the passing run exits 0" 0 "$KMSRUN" replay "$WORK/ok"
expect_output "summary: 6 cases replayed as passed" "replayed: 6 passed, 0 failed, 0 skipped"
expect_output "agrees with the recording" "the replay agrees with the recorded verdicts"
expect_output "manifest checked" "files match MANIFEST.sha256"
expect_output "an expect_error re-checked against its transcript entry" \
  "[ok  ] expect_error Onboard.Bootstrap"
replay_json "$WORK/ok"
if [ $rcode -eq 0 ] && $PY - "$WORK/replay.json" "$WORK/ok/report.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2]))
assert r["summary"] == {"passed": 6, "failed": 0, "skipped": 0}, r["summary"]
e = r["expectations"]
# Every expect_error / expect_ok / expect_eq step of the report was re-checked, none unlinked.
n = sum(1 for c in rep["cases"] for s in c["steps"] if s["name"].split(" ")[0] in ("expect_error", "expect_ok", "expect_eq"))
assert e["held"] == n and e["failed"] == 0 and e["unverifiable"] == 0, (e, n)
checks = [c for b in r["blocks"] for c in b["checks"] if c["kind"] in ("expect_error", "expect_ok")]
assert checks and all(isinstance(c.get("seq"), int) for c in checks), "each linked to a transcript entry"
assert r["differences"] == [] and r["exit_code"] == 0
PYEOF
then ok "--json: every expectation step of the report re-checked against a transcript entry, all held"
else not_ok "--json result of the passing run" "exit $rcode" "$(head -c 600 "$WORK/replay.json")"; fi
run "replay of evidence.tar.gz exits 0" 0 "$KMSRUN" replay -q "$WORK/ok/evidence.tar.gz"
expect_output "the archive replays the same" "replayed: 6 passed, 0 failed, 0 skipped"

# 2. Mutations: replay reports the same failing case as the recording, offline.
for row in "skip-bootstrap-self-check 1" "skip-receiver-source-check 3" "skip-runtime-self-check 4" "allow-no-quote 5"; do
  set -- $row
  "$KMSRUN" -q --out "$WORK/m-$1" --var sim_mutation="$1" "$RUNBOOK" >/dev/null 2>&1
  replay_json "$WORK/m-$1"
  if [ $rcode -eq 1 ] && $PY - "$WORK/replay.json" "$WORK/m-$1/report.json" "$2" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2])); want = int(sys.argv[3])
replayed = {b["id"]: b["replayed"] for b in r["blocks"] if b["kind"] == "case"}
recorded = {c["id"]: c["status"] for c in rep["cases"]}
assert replayed == recorded, (replayed, recorded)
assert [i for i, s in replayed.items() if s == "failed"] == [want], replayed
case = [b for b in r["blocks"] if b.get("id") == want][0]
failed = [c for c in case["checks"] if c["verdict"] == "failed"]
assert len(failed) == 1 and failed[0]["kind"] == "expect_error" and failed[0]["actual"].startswith("HTTP 200"), failed
assert r["differences"] == []
PYEOF
  then ok "mutation $1: replay fails case $2 like the recording, on the re-evaluated expect_error (HTTP 200)"
  else not_ok "mutation $1: replay reports case $2" "exit $rcode" "$(head -c 800 "$WORK/replay.json")"; fi
done
run "replay of a failing run exits 1" 1 "$KMSRUN" replay "$WORK/m-skip-runtime-self-check"
expect_output "the failing expectation, expected and actual" "[FAIL] expect_error KMS.GetTempCaCert"
expect_output "expected text" 'expected: an RPC error starting with "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"'
expect_output "case 4 FAILED" "replayed: 3 passed, 1 failed, 2 skipped"

# 3. An edited transcript: the verdict is re-evaluated, not copied from the report.
cp -r "$WORK/ok" "$WORK/edited"
$PY - "$WORK/edited/transcript.ndjson" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for e in lines:
    if e["method"] == "Onboard.Bootstrap" and e.get("status") == 400:
        e["response"] = {"error": "something else entirely"}; e["error"] = "something else entirely"
        break
open(sys.argv[1], "w").write("".join(json.dumps(e) + "\n" for e in lines))
PYEOF
run "replay of an edited transcript exits 1" 1 "$KMSRUN" replay "$WORK/edited"
expect_output "case 1 now fails on replay" "[FAIL] expect_error Onboard.Bootstrap"
expect_output "and differs from the recording" "DIFFERS: recorded passed"
expect_output "the manifest names the edited file" "CHANGED since the run: transcript.ndjson"
# The other way round, without a manifest: the recorded failure of case 4 is made
# to look right in the transcript; replay passes the case and says it disagrees.
cp -r "$WORK/m-skip-runtime-self-check" "$WORK/fixed"
rm -f "$WORK/fixed/MANIFEST.sha256"
$PY - "$WORK/fixed/transcript.ndjson" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
gets = [e for e in lines if e["method"] == "KMS.GetTempCaCert"]
e = gets[-1]
e["status"] = 400
e["response"] = {"error": "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"}
open(sys.argv[1], "w").write("".join(json.dumps(e) + "\n" for e in lines))
PYEOF
replay_json "$WORK/fixed"
if [ $rcode -eq 1 ] && $PY - "$WORK/replay.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = [b for b in r["blocks"] if b.get("id") == 4][0]
assert b["replayed"] == "passed" and b["recorded"] == "failed" and not b["agrees"], b
assert r.get("manifest") is None, "no manifest to check"
assert any("case 4" in d for d in r["differences"]), r["differences"]
PYEOF
then ok "a transcript edited to look right: case 4 replays as passed and the replay reports the disagreement (exit 1)"
else not_ok "edited transcript of a failing run" "exit $rcode" "$(head -c 600 "$WORK/replay.json")"; fi

# 4. --curl: one command per recorded RPC, the documented form.
run "--curl exits 0" 0 "$KMSRUN" replay "$WORK/ok" --curl
cp "$WORK/out" "$WORK/curl.sh"
n_rpc=$(wc -l <"$WORK/ok/transcript.ndjson")
n_curl=$(grep -c '^curl ' "$WORK/curl.sh")
if [ "$n_rpc" = "$n_curl" ]; then ok "one curl line per transcript entry ($n_curl)"; else not_ok "one curl line per RPC" "$n_rpc RPCs, $n_curl curl lines"; fi
if sh -n "$WORK/curl.sh"; then ok "the curl script is valid sh"; else not_ok "the curl script is valid sh"; fi
if grep -E "^curl -sS -X POST 'https://127\.0\.0\.1:[0-9]+/prpc/KMS\.GetMeta\?json' -H 'Content-Type: application/json' -d '\{\}' -k$" "$WORK/curl.sh" >/dev/null
then ok "GetMeta as: curl -sS -X POST 'https://127.0.0.1:PORT/prpc/KMS.GetMeta?json' -H 'Content-Type: application/json' -d '{}' -k"
else not_ok "GetMeta curl line form" "$(grep GetMeta "$WORK/curl.sh" | head -2)"; fi
if ! grep '^curl ' "$WORK/curl.sh" | grep -Eq -- " -f( |$)|--fail|-sSf"; then ok "no curl line uses -f"; else not_ok "no -f"; fi
bad_k=$(grep '^curl ' "$WORK/curl.sh" | awk '{ https = ($0 ~ /'"'"'https:/); k = ($0 ~ / -k$/); if (https != k) print }' | wc -l)
if [ "$bad_k" = 0 ]; then ok "-k exactly on the https lines"; else not_ok "-k exactly on https lines" "$bad_k lines wrong"; fi
if grep -q "^# no -f" "$WORK/curl.sh" && grep -q "^# -k" "$WORK/curl.sh"; then ok "the script explains -k and no -f"; else not_ok "script comments"; fi
expect_output "GET /finish stays a GET" "curl -sS 'http://127.0.0.1:"
run "--curl --seq picks one entry" 0 "$KMSRUN" replay "$WORK/ok" --curl --seq 3
if [ "$(grep -c '^curl ' "$WORK/out")" = 1 ]; then ok "--seq 3 gives one command"; else not_ok "--seq 3 gives one command"; fi

# 5. The commands reproduce the calls: against a live kms-sim and auth server
# (the run's own instances are gone), with --rewrite pointing at them.
printf '{"osImages": [], "gatewayAppId": "any", "kms": {"mrAggregated": [], "devices": [], "allowAnyDevice": true}, "apps": {}}\n' >"$WORK/auth.json"
"$KMSRUN" serve auth --config "$WORK/auth.json" --port 0 >"$WORK/auth.stdout" 2>"$WORK/auth.log" &
PIDS="$PIDS $!"
for _ in $(seq 1 200); do grep -q "listening on" "$WORK/auth.stdout" 2>/dev/null && break; sleep 0.05; done
auth_url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$WORK/auth.stdout" | head -1)
mkdir -p "$WORK/live/certs"
cat >"$WORK/live/kms.toml" <<EOF
[rpc]
address = "127.0.0.1"
port = 0
[rpc.tls]
key = "$WORK/live/certs/rpc.key"
certs = "$WORK/live/certs/rpc.crt"
[rpc.tls.mutual]
ca_certs = "$WORK/live/certs/tmp-ca.crt"
mandatory = false
[core]
cert_dir = "$WORK/live/certs"
site_name = "kms-live"
[core.auth_api]
type = "webhook"
[core.auth_api.webhook]
url = "$auth_url"
[core.onboard]
enabled = true
auto_bootstrap_domain = ""
address = "127.0.0.1"
port = 0
[core.image]
verify = false
EOF
(cd "$WORK/live" && exec "$KMSRUN" serve kms-sim -c "$WORK/live/kms.toml" --name kms-live) >"$WORK/live/stdout" 2>"$WORK/live/log" &
PIDS="$PIDS $!"
for _ in $(seq 1 200); do grep -q "listening on" "$WORK/live/stdout" 2>/dev/null && break; sleep 0.05; done
live=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$WORK/live/stdout" | head -1)
# The recorded base URL of kms-src's onboard endpoint, and the seqs of its
# GetAttestationInfo and denied Bootstrap.
read -r recorded seq_att seq_boot < <($PY - "$WORK/ok/transcript.ndjson" <<'PYEOF'
import json, sys
es = [json.loads(l) for l in open(sys.argv[1])]
att = next(e for e in es if e["kms"] == "kms-src" and e["method"] == "Onboard.GetAttestationInfo")
boot = next(e for e in es if e["kms"] == "kms-src" and e["method"] == "Onboard.Bootstrap" and e["status"] == 400)
print(att["url"].split("/prpc/")[0], att["seq"], boot["seq"])
PYEOF
)
if [ -n "$auth_url" ] && [ -n "$live" ] && [ -n "$recorded" ]; then
  "$KMSRUN" replay "$WORK/ok" --curl --seq "$seq_att" --seq "$seq_boot" --rewrite "$recorded=$live" >"$WORK/repro.sh"
  sh "$WORK/repro.sh" >"$WORK/repro.out" 2>&1
  code=$?
  if [ $code -eq 0 ] && grep -q '"mr_aggregated"' "$WORK/repro.out" \
     && grep -q 'KMS is not allowed to bootstrap: boot denied: ' "$WORK/repro.out"; then
    ok "the rewritten curl commands reproduce GetAttestationInfo (200) and the denied Bootstrap (400 body shown, curl exit 0)"
  else not_ok "curl reproduction" "exit $code" "$(cat "$WORK/repro.sh" | grep '^curl')" "$(head -c 600 "$WORK/repro.out")"; fi
else not_ok "live emulator for the curl reproduction" "auth: $auth_url, kms: $live, recorded: $recorded" "$(tail -5 "$WORK/live/log")"; fi

# 6. Usage.
run "replay without OUTDIR" 2 "$KMSRUN" replay
run "replay of a missing directory" 2 "$KMSRUN" replay "$WORK/nope"
expect_output "says so" "no such output directory or archive"
run "replay --seq without --curl" 2 "$KMSRUN" replay "$WORK/ok" --seq 1
run "replay --case that matches nothing" 2 "$KMSRUN" replay "$WORK/ok" --case "no such case"
run "replay --case 3 (one case)" 0 "$KMSRUN" replay "$WORK/ok" --case 3
expect_output "only case 3" "replayed: 1 passed, 0 failed, 0 skipped"

finish
