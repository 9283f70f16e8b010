#!/bin/bash
# runbooks/self_auth.lua, unchanged, on the local target, with kmsrun's KMS emulator
# standing in for the dstack-kms binary, a stand-in simulator per KMS (tests/fakes/,
# each with its own fixture files) and a stand-in collateral service: all five cases
# pass and every process is stopped. Then each failure mode a real dstack-kms meets
# with the simulator gives its own clear error or warning (shared identity, a quote
# the KMS cannot verify, the split vm_config), and missing binaries name their variable.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
RUNBOOK=$SRC/runbooks/self_auth.lua
KMS=$SRC/tests/fakes/dstack-kms-emulator.sh
SIM=$SRC/tests/fakes/dstack-simulator-standin.sh
MOCK=$SRC/tests/fakes/dstack-mock-attestation-standin.sh
FIX=$SRC/tests/fakes/simulator
export KMSRUN # the emulator wrapper runs "$KMSRUN serve kms-sim"

# kms-dst's fixture files: the same, but another attested identity (as two CVMs have).
cp -r "$FIX" "$WORK/fixture-dst"
sed -i 's/identity=standin-fixture-a/identity=standin-fixture-b/' "$WORK/fixture-dst/attestation.bin"
DIRS="kms-src=$FIX,kms-dst=$WORK/fixture-dst"
BASE=(--target local --var kms_binary="$KMS" --var simulator_binary="$SIM" --var mock_attestation_binary="$MOCK")

run "self_auth passes on local (emulator as dstack-kms, stand-in simulators and collateral service)" 0 \
  "$KMSRUN" --out "$WORK/ok" "${BASE[@]}" --var simulator_dirs="$DIRS" "$RUNBOOK"
expect_output "five cases passed, the sim-only case 6 skipped" "cases: 5 passed, 0 failed, 1 skipped"
expect_output "the copied sys-config.json reports the attested vm_config, and the report says so" \
  "kms-src's simulator: sys-config.json's vm_config (os_image_hash 5b768957"

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
if [ -e "$WORK/ok/logs/simulator-kms-src.log" ] && [ -e "$WORK/ok/logs/simulator-kms-dst.log" ] && [ -e "$WORK/ok/logs/collateral.log" ] \
  && [ ! -e "$WORK/ok/logs/simulator-kms-noattest.log" ]; then
  ok "one simulator per attested KMS, and the collateral service, each with its log"
else
  not_ok "simulator and collateral logs" "$(ls "$WORK/ok/logs")"
fi
if grep -q "signed_quotes=true" "$WORK/ok/logs/simulator-kms-src.log" && grep -q "GET /tpm/aia/root.pem" "$WORK/ok/logs/collateral.log"; then
  ok "the simulators were seeded and the collateral service was awaited on its probe"
else
  not_ok "seed and collateral probe" "$(cat "$WORK/ok/logs/simulator-kms-src.log" "$WORK/ok/logs/collateral.log")"
fi
if grep -q '"POST /Info' "$WORK/ok/logs/simulator-kms-src.log"; then ok "the KMS stand-in asked its simulator's Info over the socket"; else not_ok "Info over the socket" "$(cat "$WORK/ok/logs/simulator-kms-src.log")"; fi
src_mr=$(grep -o '"mr_aggregated": *"[0-9a-f]*"' "$WORK/ok/attestation/kms-src.json")
dst_mr=$(grep -o '"mr_aggregated": *"[0-9a-f]*"' "$WORK/ok/attestation/kms-dst.json")
if [ -n "$src_mr" ] && [ "$src_mr" != "$dst_mr" ]; then ok "kms-src and kms-dst have their own identities"; else not_ok "distinct identities" "$src_mr / $dst_mr"; fi
if grep -q '"mock_attestation_seed":"\[secret\]"' "$WORK/ok/report.json" || grep -q '"mock_attestation_seed": "\[secret\]"' "$WORK/ok/report.json"; then
  ok "the seed variable is reported as [secret]"
else
  not_ok "seed redacted in report.json" "$(grep -o '"mock_attestation_seed"[^,]*' "$WORK/ok/report.json")"
fi
workdir=$(grep -o '"kind":"dir","path":"[^"]*"' "$WORK/ok/ledger.ndjson" | sed 's/.*"path":"//; s/"$//' | head -1)
if [ -n "$workdir" ] && [ ! -e "$workdir" ]; then ok "the private work directory is removed ($workdir)"; else not_ok "work directory removed" "'$workdir'"; fi

# Failure modes -------------------------------------------------------------------------

run "copies of one fixture for both KMS: a setup error, no case runs" 3 \
  "$KMSRUN" --out "$WORK/shared" "${BASE[@]}" --var simulator_dir="$FIX" "$RUNBOOK"
expect_output "names the shared identity" "kms-src and kms-dst report the same mr_aggregated: the cases cannot tell them apart"
expect_output "says what to do on local" "simulator_dirs with a different attestation.bin per KMS"

# A collateral service whose roots come from another seed: the KMS cannot verify its quote.
cat >"$WORK/mock-other-seed" <<EOF
#!/bin/sh
# Rewrites the seed of --config before serving: roots that do not match the simulators.
for a in "\$@"; do case "\$prev" in --config) sed -i 's/"mock_attestation_seed": *"[0-9a-f]*"/"mock_attestation_seed": "$(printf '5a%.0s' $(seq 32))"/' "\$a" ;; esac; prev=\$a; done
exec "$MOCK" "\$@"
EOF
chmod +x "$WORK/mock-other-seed"
start=$(date +%s)
run "trust anchors that do not match the simulator's seed: a setup error, not a timeout" 3 \
  "$KMSRUN" --out "$WORK/unverified" --target local --var kms_binary="$KMS" --var simulator_binary="$SIM" \
  --var mock_attestation_binary="$WORK/mock-other-seed" --var simulator_dirs="$DIRS" "$RUNBOOK"
took=$(( $(date +%s) - start ))
expect_output "Failed to verify attestation, explained" "cannot verify the quotes of its guest agent"
expect_output "names the root mismatch" "core.attestation.root_ca.tdx is not the root of the simulator's mock_attestation_seed"
if [ "$took" -lt 25 ]; then ok "reported in ${took} s (wait_ready would wait 60)"; else not_ok "fast diagnosis" "took $took s"; fi

run "the stock files' split vm_config kept: a warning per KMS, and the cases still pass" 0 \
  "$KMSRUN" --out "$WORK/split" "${BASE[@]}" --var simulator_dirs="$DIRS" --var simulator_vm_config=keep "$RUNBOOK"
expect_output "the target warns about the two hashes" "warning: kms-src's simulator files carry two OS image hashes"
expect_output "capture_attestation warns and lists both" "allow(kms-src) and deny_by_mr(kms-src) list both"
expect_output "five cases passed with the split (case 6 is sim-only)" "cases: 5 passed, 0 failed, 1 skipped"

# Missing binaries ----------------------------------------------------------------------

run "missing dstack-kms binary" 3 \
  "$KMSRUN" --out "$WORK/nokms" "${BASE[@]}" --var simulator_dirs="$DIRS" --var kms_binary="$WORK/missing/dstack-kms" "$RUNBOOK"
expect_output "names the binary" "cannot run dstack-kms '$WORK/missing/dstack-kms'"
expect_output "names the variable" "give --var kms_binary=/path/to/dstack-kms"

run "missing simulator binary" 3 \
  "$KMSRUN" --out "$WORK/nosim" "${BASE[@]}" --var simulator_dirs="$DIRS" --var simulator_binary="$WORK/missing/dstack-simulator" "$RUNBOOK"
expect_output "names the simulator" "cannot run dstack-simulator '$WORK/missing/dstack-simulator'"
expect_output "names its variable" "give --var simulator_binary=/path/to/dstack-simulator"

run "missing collateral service binary" 3 \
  "$KMSRUN" --out "$WORK/nomock" "${BASE[@]}" --var simulator_dirs="$DIRS" --var mock_attestation_binary="$WORK/missing/dstack-mock-attestation" "$RUNBOOK"
expect_output "names the collateral service" "cannot run dstack-mock-attestation '$WORK/missing/dstack-mock-attestation'"
expect_output "names its variable" "give --var mock_attestation_binary=/path/to/dstack-mock-attestation"

printf '#!/bin/sh\nexec sleep 30\n' >"$WORK/mute-simulator"
chmod +x "$WORK/mute-simulator"
run "a simulator that never creates dstack.sock" 3 \
  "$KMSRUN" --out "$WORK/mute" "${BASE[@]}" --var simulator_dirs="$DIRS" --var simulator_binary="$WORK/mute-simulator" \
  --var simulator_timeout=1 "$RUNBOOK"
expect_output "says what did not appear, and the knob" "dstack.sock within 1 s (simulator_timeout)"

finish
