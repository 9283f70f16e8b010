#!/bin/bash
# tests/runbooks/attested_calls.lua on sim: attested GetKmsKey, GetAppKey and SignCert
# succeed and the denials hold (every case passes); then, under each mutation switch of
# the KMS and auth emulators that removes a caller check, exactly the cases that depend on
# that check fail (--keep-going, so every case runs).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
RUNBOOK=$SRC/tests/runbooks/attested_calls.lua

run "attested_calls passes on sim" 0 "$KMSRUN" -q --out "$WORK/ok" "$RUNBOOK"
expect_output "summary line" "cases: 13 passed, 0 failed, 0 skipped"
if [ -s "$WORK/ok/rpc/signcert-wallet.json" ] && grep -q "BEGIN CERTIFICATE" "$WORK/ok/rpc/signcert-wallet.json"; then
  ok "the SignCert answer is saved with its chain"
else
  not_ok "the SignCert answer is saved with its chain"
fi

for row in "skip-kms-caller-check 2,4,5,6" "skip-app-check 8,11" "auth-ignore-device 4" \
           "auth-ignore-os-image 5" "auth-ignore-tcb-status 6" "skip-os-image-verification 9" "skip-os-image-fill 13"; do
  set -- $row
  run "mutation $1 fails the run" 1 "$KMSRUN" -q --keep-going --out "$WORK/m-$1" --var sim_mutation="$1" "$RUNBOOK"
  if $PY - "$WORK/m-$1/report.json" "$2" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); want = sorted(int(x) for x in sys.argv[2].split(","))
failed = sorted(c["id"] for c in r["cases"] if c["status"] == "failed")
assert failed == want, (failed, want)
assert all(c["status"] == "passed" for c in r["cases"] if c["id"] not in want)
PYEOF
  then ok "mutation $1 is caught by exactly cases $2"; else not_ok "mutation $1 caught by cases $2" "$(grep -B2 -A3 FAIL "$WORK/out" | head -30)"; fi
done

finish
