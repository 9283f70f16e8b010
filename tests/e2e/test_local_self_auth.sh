#!/bin/bash
# runbooks/self_auth.lua, unchanged, on the local target, with kmsrun's KMS
# emulator standing in for the dstack-kms binary and a stand-in simulator that
# creates ./dstack.sock: all five cases pass and every process is stopped.
# Missing binaries give clear errors naming the variable to set.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
RUNBOOK=$SRC/runbooks/self_auth.lua
KMS=$SRC/tests/fakes/dstack-kms-emulator.sh
SIM=$SRC/tests/fakes/dstack-simulator-standin.sh
MOCK=$SRC/tests/fakes/dstack-mock-attestation-standin.sh
FIX=$SRC/tests/fakes/simulator
export KMSRUN # the emulator wrapper runs "$KMSRUN serve kms-sim"
# Every run below also gets the stand-in collateral service and fixture files.
STANDINS=(--var mock_attestation_binary="$MOCK" --var simulator_dir="$FIX")

run "self_auth passes on local (emulator as dstack-kms, stand-in simulator)" 0 \
  "$KMSRUN" --out "$WORK/ok" --target local --var kms_binary="$KMS" --var simulator_binary="$SIM" "${STANDINS[@]}" "$RUNBOOK"
expect_output "five cases passed" "cases: 5 passed, 0 failed, 0 skipped"

pids=$(grep -o '"pid":[0-9]*' "$WORK/ok/ledger.ndjson" | cut -d: -f2 | sort -u | tr '\n' ' ')
left=""
for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
n=$(echo "$pids" | wc -w)
if [ "$n" -ge 6 ] && [ -z "$left" ]; then ok "all $n processes (3 KMS, 2 simulators, the collateral service) stopped"; else not_ok "processes stopped" "pids: $pids left: $left"; fi
if grep -q "no guest agent" "$WORK/ok/logs/kms-noattest.log" && ! grep -q "no guest agent" "$WORK/ok/logs/kms-src.log"; then
  ok "only kms-noattest runs without a guest agent"
else
  not_ok "guest agent addressing" "$(grep -H "guest agent" "$WORK/ok/logs/"*.log)"
fi
if [ -e "$WORK/ok/logs/simulator-kms-src.log" ] && [ -e "$WORK/ok/logs/simulator-kms-dst.log" ] && [ -e "$WORK/ok/logs/collateral.log" ]; then
  ok "each simulator's log and the collateral service's are evidence"
else
  not_ok "simulator and collateral logs kept" "$(ls "$WORK/ok/logs")"
fi
workdir=$(grep -o '"kind":"dir","path":"[^"]*"' "$WORK/ok/ledger.ndjson" | sed 's/.*"path":"//; s/"$//' | head -1)
if [ -n "$workdir" ] && [ ! -e "$workdir" ]; then ok "the private work directory is removed ($workdir)"; else not_ok "work directory removed" "'$workdir'"; fi

run "missing dstack-kms binary" 3 \
  "$KMSRUN" --out "$WORK/nokms" --target local --var kms_binary="$WORK/missing/dstack-kms" --var simulator_binary="$SIM" "${STANDINS[@]}" "$RUNBOOK"
expect_output "names the binary" "cannot run dstack-kms '$WORK/missing/dstack-kms'"
expect_output "names the variable" "give --var kms_binary=/path/to/dstack-kms"

run "missing simulator binary" 3 \
  "$KMSRUN" --out "$WORK/nosim" --target local --var kms_binary="$KMS" --var simulator_binary="$WORK/missing/dstack-simulator" "${STANDINS[@]}" "$RUNBOOK"
expect_output "names the simulator" "cannot run dstack-simulator '$WORK/missing/dstack-simulator'"
expect_output "names its variable" "give --var simulator_binary=/path/to/dstack-simulator"

printf '#!/bin/sh\nexec sleep 30\n' >"$WORK/mute-simulator"
chmod +x "$WORK/mute-simulator"
run "a simulator that never creates dstack.sock" 3 \
  "$KMSRUN" --out "$WORK/mute" --target local --var kms_binary="$KMS" --var simulator_binary="$WORK/mute-simulator" \
  --var simulator_timeout=1 "${STANDINS[@]}" "$RUNBOOK"
expect_output "says what did not appear, and the knob" "dstack.sock within 1 s (simulator_timeout)"

finish
