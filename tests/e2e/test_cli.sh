#!/bin/bash
# The command line: usage errors, runbook errors with file:line, exit codes.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

run "--version prints the version" 0 "$KMSRUN" --version
expect_output "version string" "kmsrun 0."

run "no runbook is a usage error" 2 "$KMSRUN"
expect_output "usage shown" "usage: kmsrun [options] RUNBOOK.lua"

run "unknown option" 2 "$KMSRUN" --frobnicate "$SRC/runbooks/self_auth.lua"
expect_output "names the option" "unknown option --frobnicate"

run "missing runbook file" 2 "$KMSRUN" "$WORK/nope.lua"
expect_output "says it cannot open it" "cannot open runbook"

run "syntax error exits 2" 2 "$KMSRUN" "$SRC/tests/runbooks/syntax_error.lua"
expect_output "syntax error at file:line" "syntax_error.lua:3:"

run "unknown DSL name exits 2" 2 "$KMSRUN" --out "$WORK/o1" "$SRC/tests/runbooks/unknown_name.lua"
expect_output "points at the runbook line" "unknown_name.lua:5: unknown name 'deploi' (did you mean 'deploy'?)"

run "unknown option of a DSL function exits 2" 2 "$KMSRUN" "$SRC/tests/runbooks/bad_argument.lua"
expect_output "names the option and the line" "bad_argument.lua:3: kms: unknown option 'attestaton' (did you mean 'attestation'?)"

run "runtime error in a case exits 2" 2 "$KMSRUN" --out "$WORK/o2" "$SRC/tests/runbooks/runtime_error.lua"
expect_output "traceback names the runbook line" "runtime_error.lua:4:"
if grep -q '"failure_kind": "error"' "$WORK/o2/report.json" && grep -q '"status": "skipped"' "$WORK/o2/report.json"; then
  ok "report written: erroring case and the skipped one"
else
  not_ok "report written" "$(cat "$WORK/o2/report.json" 2>/dev/null | head -40)"
fi

run "a secret too short to scrub is refused" 2 "$KMSRUN" --out "$WORK/o3" "$SRC/tests/runbooks/short_secret.lua"
expect_output "says why, at the runbook line" "short_secret.lua:3: secret: a value shorter than 4 bytes cannot be kept out of the evidence"

run "unknown variable" 2 "$KMSRUN" --var nope=1 "$SRC/runbooks/self_auth.lua"
expect_output "names the variable" "unknown variable 'nope'"

run "unknown target" 2 "$KMSRUN" --target nowhere "$SRC/runbooks/self_auth.lua"
expect_output "names the target" "unknown target 'nowhere'"

run "--help of a runbook lists its cases" 0 "$KMSRUN" "$SRC/runbooks/self_auth.lua" --help
expect_output "case 3 listed" "3. the receiver rejects onboarding from a denied source KMS"

finish
