#!/bin/bash
# runbooks/self_auth.lua on the sim target: all six cases pass; the report, the
# JUnit file (read by a real consumer), the archive and its manifest are right;
# no private key handed out by the emulator reaches the output; and each of the
# emulator's mutation switches is caught by exactly the case that checks it.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
RUNBOOK=$SRC/runbooks/self_auth.lua

run "self_auth passes on sim" 0 "$KMSRUN" --out "$WORK/ok" --var sim_leak_keys_to="$WORK/leaked-keys" "$RUNBOOK"
expect_output "summary line" "cases: 6 passed, 0 failed, 0 skipped"

if $PY - "$WORK/ok/report.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "passed" and r["exit_code"] == 0 and r["target"] == "sim", r["status"]
assert [c["status"] for c in r["cases"]] == ["passed"] * 6
assert all(c["steps"] and all(s["status"] == "passed" for s in c["steps"]) for c in r["cases"])
assert r["summary"] == {"passed": 6, "failed": 0, "skipped": 0}
assert any(s.get("policies") for c in r["cases"] for s in c["steps"]), "steps record the policies in force"
PYEOF
then ok "report.json: six passed cases with their steps"; else not_ok "report.json content"; fi

if $PY - "$WORK/ok/junit.xml" <<'PYEOF'
import sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
suites = list(xml)
assert len(suites) == 1, suites
suite = suites[0]
cases = list(suite)
assert suite.tests == 6 and suite.failures == 0 and suite.errors == 0, (suite.tests, suite.failures)
assert len(cases) == 6 and all(c.is_passed for c in cases), [c.result for c in cases]
PYEOF
then ok "junit.xml read by junitparser: 6 passing test cases"; else not_ok "junit.xml not accepted by junitparser"; fi

perms=$(find "$WORK/ok" -printf '%m %y\n' | sort -u | tr '\n' ' ')
case "$perms" in
  *[0-7][1-7][0-7]\ *|*[0-7][0-7][1-7]\ *) not_ok "output is owner-only" "$perms" ;;
  *) ok "output is owner-only ($perms)" ;;
esac

if (cd "$WORK/ok" && sha256sum --quiet -c MANIFEST.sha256); then ok "MANIFEST.sha256 verifies"; else not_ok "MANIFEST.sha256 verifies"; fi
mkdir -p "$WORK/unpacked"
tar -xzf "$WORK/ok/evidence.tar.gz" -C "$WORK/unpacked"
for f in report.json junit.xml transcript.ndjson attestation/kms-src.json rpc/bootstrap-src-denied.json \
         rpc/get-temp-ca-denied.json rpc/kms-dst-meta.json logs/kms-src.log logs/auth-src.decisions.ndjson; do
  if [ -s "$WORK/unpacked/ok/$f" ]; then ok "archive holds $f"; else not_ok "archive holds $f"; fi
done

# Redaction: every private key the emulator handed out is absent from the output
# directory and from the archive's contents, in PEM-body and hex form.
cat >"$WORK/leakscan.py" <<'PYEOF'
import os, sys, re
keys = set()
text = open(sys.argv[1]).read()
for pem in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", text, re.S):
    for line in pem.split():
        if len(line) >= 40: keys.add(line)          # PEM body lines
for h in re.findall(r"\b[0-9a-f]{64}\b", text): keys.add(h)
assert len(keys) >= 5, f"expected the emulator to log keys, got {len(keys)}"
hits = []
for root in sys.argv[2:]:
    for d, _, files in os.walk(root):
        for f in files:
            data = open(os.path.join(d, f), "rb").read().decode("latin-1")
            hits += [(os.path.join(d, f), k[:16]) for k in keys if k in data]
print(f"{len(keys)} secret fragments checked, {len(hits)} hits")
for h in hits[:10]: print("HIT", *h)
sys.exit(1 if hits else 0)
PYEOF
if $PY - "$WORK/leaked-keys" "$WORK/ok" "$WORK/unpacked" <"$WORK/leakscan.py" >"$WORK/leakcheck" 2>&1; then ok "no private key in the output or the archive ($(head -1 "$WORK/leakcheck"))"
else not_ok "private keys leaked" "$(cat "$WORK/leakcheck")"; fi
# Negative control: the same scan does find keys when they are there.
mkdir -p "$WORK/control" && cp "$WORK/leaked-keys" "$WORK/control/"
if $PY - "$WORK/leaked-keys" "$WORK/control" <"$WORK/leakscan.py" >/dev/null 2>&1; then
  not_ok "the leak scan detects planted keys (negative control)"
else ok "the leak scan detects planted keys (negative control)"; fi
if grep -q "REDACTED sha256:" "$WORK/ok/transcript.ndjson"; then ok "transcript carries redaction markers"; else not_ok "transcript carries redaction markers"; fi

# Mutation switches: each re-creates one bug; exactly its case must catch it.
for row in "skip-bootstrap-self-check 1" "cache-self-decision 2" "skip-receiver-source-check 3" "skip-runtime-self-check 4" "allow-no-quote 5"; do
  set -- $row
  run "mutation $1 fails the run" 1 "$KMSRUN" -q --out "$WORK/m-$1" --var sim_mutation="$1" "$RUNBOOK"
  if $PY - "$WORK/m-$1/report.json" "$2" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); want = int(sys.argv[2])
st = {c["id"]: c["status"] for c in r["cases"]}
assert st[want] == "failed", st
assert all(st[i] == "passed" for i in st if i < want), st
assert r["status"] == "failed" and r["exit_code"] == 1
PYEOF
  then ok "mutation $1 is caught by case $2 (earlier cases pass)"; else not_ok "mutation $1 caught by case $2" "$(grep -A3 FAIL "$WORK/out" | head)"; fi
done

finish
