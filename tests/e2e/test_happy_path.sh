#!/bin/bash
# runbooks/onboard_happy_path.lua on the sim target: bootstrap kms-src, onboard
# kms-dst from it, both serve GetMeta and GetTempCaCert. It passes, its report
# validates against the schema and replays offline; and each allowance the
# runbook grants is needed: taking any one away fails the case that needs it,
# with the error the protocol gives for that missing allowance.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
RUNBOOK=$SRC/runbooks/onboard_happy_path.lua

run "onboard_happy_path passes on sim" 0 "$KMSRUN" --out "$WORK/ok" --events "$WORK/ok.ndjson" \
  --var sim_leak_keys_to="$WORK/leaked-keys" "$RUNBOOK"
expect_output "summary line" "cases: 3 passed, 0 failed, 0 skipped"

if $PY - "$SRC/docs/schemas/report.schema.json" "$WORK/ok/report.json" "$SRC/docs/schemas/events.schema.json" "$WORK/ok.ndjson" <<'PYEOF'
import json, sys, jsonschema
rs, r, es, ev = sys.argv[1:5]
jsonschema.Draft202012Validator(json.load(open(rs))).validate(json.load(open(r)))
v = jsonschema.Draft202012Validator(json.load(open(es)))
for line in open(ev): v.validate(json.loads(line))
r = json.load(open(r))
assert [c["status"] for c in r["cases"]] == ["passed"] * 3 and r["exit_code"] == 0
names = [s["name"] for c in r["cases"] for s in c["steps"]]
for want in ("rpc kms-src KMS.GetMeta", "rpc kms-dst KMS.GetMeta", "rpc kms-src KMS.GetTempCaCert", "rpc kms-dst KMS.GetTempCaCert"):
    assert want in names, want
PYEOF
then ok "report.json and every event validate against the schemas; GetMeta and GetTempCaCert probed on both"
else not_ok "report/events schema validation"; fi

for f in rpc/bootstrap-src.json rpc/onboard-dst.json rpc/kms-src-meta.json rpc/kms-dst-meta.json rpc/kms-src-temp-ca.json rpc/kms-dst-temp-ca.json; do
  if [ -s "$WORK/ok/$f" ]; then ok "evidence $f"; else not_ok "evidence $f"; fi
done
if grep -q '"temp_ca_key": "\[REDACTED sha256:' "$WORK/ok/rpc/kms-dst-temp-ca.json"; then ok "temp_ca_key saved redacted"
else not_ok "temp_ca_key saved redacted" "$(grep temp_ca_key "$WORK/ok/rpc/kms-dst-temp-ca.json")"; fi
if $PY - "$WORK/leaked-keys" "$WORK/ok" "$WORK/ok.ndjson" <<'PYEOF'
import os, re, sys
text = open(sys.argv[1]).read()
keys = set()
for pem in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", text, re.S):
    keys.update(l for l in pem.split() if len(l) >= 40)
keys.update(re.findall(r"\b[0-9a-f]{64}\b", text))
assert len(keys) >= 4, len(keys)
paths = [sys.argv[3]] + [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[2]) for f in fs if not f.endswith(".tar.gz")]
hits = [(p, k[:12]) for p in paths for k in keys if k in open(p, "rb").read().decode("latin-1")]
assert not hits, hits[:5]
PYEOF
then ok "no private key handed out by the emulators is in the output or the events"
else not_ok "private keys leaked"; fi

run "replay of the run agrees" 0 "$KMSRUN" replay "$WORK/ok"
expect_output "replayed as passing" "replayed: 3 passed, 0 failed, 0 skipped"

# Each allowance is needed: remove one (deny that KMS by MR instead) and the case
# that needs it fails, on the expect_ok of the call that needed it, with the error
# naming who refused.
check_needed() { # NAME SED CASE STEP ERROR
  sed "$2" "$RUNBOOK" >"$WORK/mutant.lua"
  if cmp -s "$RUNBOOK" "$WORK/mutant.lua"; then not_ok "$1: the edit applies"; return; fi
  "$KMSRUN" -q --out "$WORK/mutant" "$WORK/mutant.lua" >"$WORK/out" 2>&1
  code=$?
  if [ $code -eq 1 ] && $PY - "$WORK/mutant/report.json" "$3" "$4" "$5" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); case, step, err = int(sys.argv[2]), sys.argv[3], sys.argv[4]
st = {c["id"]: c["status"] for c in r["cases"]}
assert st[case] == "failed" and all(st[i] == "passed" for i in st if i < case), st
failed = [s for c in r["cases"] if c["id"] == case for s in c["steps"] if s["status"] != "passed"]
assert len(failed) == 1 and failed[0]["name"] == step, failed
assert err in failed[0]["actual"], failed[0]["actual"]
PYEOF
  then ok "$1"; else rm -rf "$WORK/mutant"; not_ok "$1" "exit $code" "$(grep -A3 FAIL "$WORK/out" | head -8)"; fi
  rm -rf "$WORK/mutant"
}
check_needed "auth-src must allow kms-src to bootstrap" \
  '0,/set_policy(auth_src, allow(src))/s//set_policy(auth_src, deny_by_mr(src))/' \
  1 "expect_ok Onboard.Bootstrap" "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed"
check_needed "auth-src must allow kms-dst (GetKmsKey's caller check) for the onboarding" \
  's/set_policy(auth_src, allow(src, dst))/set_policy(auth_src, allow(src))/' \
  2 "expect_ok Onboard.Onboard" '"error": "Boot denied: aggregated MR not allowed"'
check_needed "auth-dst must allow kms-src (the receiver's source check)" \
  's/set_policy(auth_dst, allow(src))/set_policy(auth_dst, deny_by_mr(src))/' \
  2 "expect_ok Onboard.Onboard" "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed"
check_needed "auth-src must still allow kms-src for its GetTempCaCert" \
  '/^case("both serve/,$ s/set_policy(auth_src, allow(src))/set_policy(auth_src, deny_by_mr(src))/' \
  3 "expect_ok KMS.GetTempCaCert" "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"
check_needed "auth-dst must allow kms-dst itself once it serves" \
  's/set_policy(auth_dst, allow(dst))/set_policy(auth_dst, deny_by_mr(dst))/' \
  3 "expect_ok KMS.GetTempCaCert" "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"

finish
