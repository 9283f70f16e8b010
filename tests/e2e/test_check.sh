#!/bin/bash
# `kmsrun check`: each seeded mistake in tests/runbooks/check/ is reported with its
# exact message at its line (exit 2), alone when the runbook seeds only one;
# several mistakes are all reported; self_auth.lua is clean (exit 0).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
RB=$SRC/tests/runbooks/check

# file | line | message | number of mistakes the file should produce
# (on fd 3, so the commands run in the loop cannot eat the table from stdin)
while IFS='|' read -r file line message count <&3; do
  [ -z "$file" ] && continue
  run "check $file" 2 "$KMSRUN" check "$RB/$file"
  expect_output "$file:$line" "/$file:$line: $message"
  expect_output "$file: $count mistake(s)" "$file: $count mistake"
done 3<<'EOF'
syntax_error.lua|6|unexpected symbol near '='|1
unknown_action.lua|6|unknown name 'deploi' (did you mean 'deploy'?)|1
unknown_expect.lua|11|unknown name 'expect_eror' (did you mean 'expect_error'?)|1
misspelt_local.lua|11|unknown name 'srcc' (did you mean 'src'?)|1
unknown_option.lua|10|rpc: unknown option 'sav' (did you mean 'save'?)|1
wrong_type.lua|11|set_policy: argument #1 (auth) must be auth, got string|1
unknown_var.lua|13|unknown variable var.src_domian (did you mean var.src_domain?) (declare it in runbook{vars = ...})|1
missing_var.lua|5|variable 'src_domain' is required: give --var src_domain=VALUE (bootstrap domain)|1
unknown_method.lua|10|rpc: unknown method 'Onboard.GetAttestationInf' (did you mean 'Onboard.GetAttestationInfo'?)|1
wrong_service.lua|10|rpc: unknown method 'KMS.Bootstrap' (did you mean 'Onboard.Bootstrap'?)|1
not_deployed.lua|6|rpc: kms-src is not deployed yet (call deploy(kms-src) first)|1
before_finish.lua|10|rpc: kms-src is in onboard mode: KMS.GetMeta is served only after finish(kms-src)|1
not_waited.lua|12|rpc: kms-src was not waited for after finish(kms-src) (call wait_ready(kms-src) first)|1
onboard_after_finish.lua|13|rpc: kms-src is in runtime mode: Onboard.Bootstrap is served only before finish(kms-src)|1
bad_needs.lua|12|case: needs "bootstrapp", which is not a case (did you mean "bootstrap"?)|1
needs_later.lua|9|case: needs "bootstrap", which is declared after it (cases run in declaration order)|1
duplicate_case.lua|12|case: a case named "attestation" already exists|1
not_attested.lua|10|allow: the attestation of kms-src has not been captured yet (call capture_attestation(kms-src) first)|1
body_field.lua|10|rpc: Onboard.Bootstrap has no request field 'domian' (did you mean 'domain'?)|1
response_field.lua|10|expect_ok: Onboard.Bootstrap answers have no field 'k256_pubky' (did you mean 'k256_pubkey'?)|1
body_read.lua|11|AttestationInfoResponse has no field 'mr_agregated' (did you mean 'mr_aggregated'?)|1
match_option.lua|10|expect_error: unknown option 'contain' (did you mean 'contains'?)|1
wait_option.lua|7|wait_ready: unknown option 'timout' (did you mean 'timeout'?)|1
never_deployed.lua|5|kms kms-spare is declared but never deployed (deploy it in setup, or remove it)|1
var_at_load.lua|2|var.src_domain cannot be read before runbook{vars = ...} declares it|1
action_at_load.lua|5|deploy: actions run inside setup, a case or teardown, not while the runbook is loading|1
wrong_target.lua|2|runbook: does not support target sim (requires: vmm)|1
runtime_error.lua|11|error in case "attestation": attempt to index a nil value (local 'info')|1
several.lua|11|rpc: unknown option 'sav' (did you mean 'save'?)|4
several.lua|12|rpc: unknown method 'Onboard.GetAttestationInf' (did you mean 'Onboard.GetAttestationInfo'?)|4
several.lua|13|set_policy: argument #1 (auth) must be auth, got string|4
several.lua|16|deploy: kms-src is already deployed|4
EOF

# Every line before the summary is file:line: message.
run "several mistakes" 2 "$KMSRUN" check "$RB/several.lua"
if head -n -1 "$WORK/out" | grep -vqE '/several\.lua:[0-9]+: '; then
  not_ok "every mistake is file:line: message" "$(cat "$WORK/out")"
else
  ok "every mistake is file:line: message"
fi

run "a required variable given with --var" 0 "$KMSRUN" check --var src_domain=kms-src.example.test "$RB/missing_var.lua"
run "an unknown --var is a usage error" 2 "$KMSRUN" check --var src_domian=x "$RB/missing_var.lua"
expect_output "names it" "kmsrun check: unknown variable 'src_domian' (did you mean 'src_domain'?)"
run "an unknown target is a usage error" 2 "$KMSRUN" check --target nowhere "$RB/missing_var.lua"
expect_output "names it" "unknown target 'nowhere'"
run "run-only options are refused" 2 "$KMSRUN" check --out "$WORK/o" "$SRC/runbooks/self_auth.lua"
run "a missing runbook file" 2 "$KMSRUN" check "$WORK/nope.lua"
expect_output "says so" "cannot open runbook"

# A case relying on an earlier one without needing it: fine in a full run,
# found by --isolated (as `--case 2` alone would run it).
run "isolated.lua is clean for a full run" 0 "$KMSRUN" check "$RB/isolated.lua"
run "--isolated finds the missing need" 2 "$KMSRUN" check --isolated "$RB/isolated.lua"
expect_output "at its line" "/isolated.lua:16: rpc: kms-src is in onboard mode: KMS.GetMeta is served only after finish(kms-src) (when case 2 runs alone: add what it relies on to its needs)"

run "self_auth.lua is clean" 0 "$KMSRUN" check "$SRC/runbooks/self_auth.lua"
expect_output "summary" "self_auth.lua: no mistakes found (6 cases, 4 kms, 2 auth servers"
if [ "$(wc -l <"$WORK/out")" -eq 1 ]; then ok "self_auth.lua: nothing but the summary"; else not_ok "self_auth.lua: nothing but the summary" "$(cat "$WORK/out")"; fi

finish
