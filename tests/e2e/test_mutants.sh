#!/bin/bash
# kmsrun mutants: every emulator mutation switch is caught by a case of
# runbooks/self_auth.lua and of runbooks/bootstrap_onboard.lua (table in the output,
# mutants.json agrees; a failure caused by an earlier one is not a catch); a runbook with
# a case no switch fails is reported as such, and its uncaught switches exit 1; a
# runbook that fails unmutated exits 1; an unknown switch is a usage error.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3

cat >"$WORK/count.lua" <<'LUA'
print(#require("kmsrun.cli.mutants.matrix").switches())
LUA
n_switches=$("$KMSRUN" script "$WORK/count.lua")

check_matrix() { # RUNBOOK OUT: every switch of the registry caught, per mutants.json
  $PY - "$2/mutants.json" "$n_switches" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert m["ok"] and m["baseline"]["status"] == "passed", m["baseline"]
assert len(m["switches"]) == n, (len(m["switches"]), n)
assert all(s["caught_by"] for s in m["switches"]), [s["switch"] for s in m["switches"] if not s["caught_by"]]
assert m["uncaught"] == [], m["uncaught"]
PYEOF
}

for rb in self_auth bootstrap_onboard; do
  [ -f "$SRC/runbooks/$rb.lua" ] || continue
  run "mutants $rb.lua: every switch caught" 0 "$KMSRUN" mutants --out "$WORK/m-$rb" "$SRC/runbooks/$rb.lua"
  expect_output "$rb: matrix header" "mutation matrix (X: the case fails under the switch; x: "
  expect_output "$rb: verdict" "every switch ($n_switches) is caught by at least one case"
  if check_matrix "$rb" "$WORK/m-$rb"; then ok "$rb: mutants.json lists all $n_switches switches, each caught"
  else not_ok "$rb: mutants.json" "$(cat "$WORK/m-$rb/mutants.json")"; fi
  cp "$WORK/out" "$WORK/out-$rb"
done
grep -q "skip-receiver-source-check .* caught by 3$" "$WORK/out-self_auth" && ok "self_auth: the receiver check is caught by case 3 only" \
  || not_ok "self_auth: the receiver check is caught by case 3 only" "$(cat "$WORK/out-self_auth")"
# A consequence is not a catch: under the bootstrap switch, self_auth's later cases fail
# only because case 1 bootstrapped (x), and bootstrap_onboard's B1 alone catches the receiver check.
grep -q "skip-bootstrap-self-check  .*X  x  x  x  x  x   caught by 1$" "$WORK/out-self_auth" && ok "self_auth: consequences of case 1 marked x" \
  || not_ok "self_auth: consequences of case 1 marked x" "$(grep skip-bootstrap "$WORK/out-self_auth")"
grep -q "skip-receiver-source-check .* caught by 7$" "$WORK/out-bootstrap_onboard" && ok "bootstrap_onboard: the receiver check is caught by B1 (case 7) only" \
  || not_ok "bootstrap_onboard: receiver check caught by B1 only" "$(grep skip-receiver "$WORK/out-bootstrap_onboard")"

# A case that nothing can fail, and switches nothing catches.
mkdir -p "$WORK/weak"
cat >"$WORK/weak/weak.lua" <<'LUA'
runbook { description = "TEST: a case no switch can fail" }
local auth = auth_server("auth")
local k = kms("kms-a", { auth = auth })
setup(function() deploy(k) wait_ready(k) capture_attestation(k) end)
case("bootstrap is denied", function()
  set_policy(auth, deny_by_mr(k))
  expect_error(rpc(k, "Onboard.Bootstrap", { domain = "a.example.test" }), "KMS is not allowed to bootstrap: ")
end)
case("attestation info answers", function() expect_ok(rpc(k, "Onboard.GetAttestationInfo")) end)
LUA
run "mutants on a weak runbook exits 1" 1 "$KMSRUN" mutants --out "$WORK/m-weak" "$WORK/weak/weak.lua"
expect_output "the unfailable case is reported" 'case 2 "attestation info answers" is failed by no switch'
expect_output "uncaught switches are named" "switches caught by no case: "
expect_output "a caught switch is still shown" "skip-bootstrap-self-check"
if $PY - "$WORK/m-weak/mutants.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert not m["ok"] and m["cases_failed_by_no_switch"] == [2], m
assert "skip-bootstrap-self-check" not in m["uncaught"] and len(m["uncaught"]) >= 1, m["uncaught"]
PYEOF
then ok "mutants.json: case 2 failed by no switch, the bootstrap self-check caught"; else not_ok "weak mutants.json" "$(cat "$WORK/m-weak/mutants.json")"; fi

# One switch only (--switch), and the runbook failing unmutated.
run "--switch runs one switch" 0 "$KMSRUN" mutants --switch skip-bootstrap-self-check --out "$WORK/m-one" "$WORK/weak/weak.lua"
expect_output "one switch, caught" "every switch (1) is caught by at least one case"
sed 's/"KMS is not allowed to bootstrap: "/"no such error"/' "$WORK/weak/weak.lua" >"$WORK/weak/broken.lua"
run "a runbook failing unmutated exits 1" 1 "$KMSRUN" mutants --switch skip-bootstrap-self-check --out "$WORK/m-broken" "$WORK/weak/broken.lua"
expect_output "says the baseline fails" "the runbook does not pass without a mutation"
run "an unknown switch is a usage error" 2 "$KMSRUN" mutants --switch skip-everything "$WORK/weak/weak.lua"
expect_output "names the known switches" "unknown switch 'skip-everything' (known: "
run "mutants is sim only" 2 "$KMSRUN" mutants --target vmm "$WORK/weak/weak.lua"
# The shared parser's conventions (lib/argv.lua, as check and plan): the command named,
# then the usage.
run "an unknown option is a usage error" 2 "$KMSRUN" mutants --no-such-flag "$WORK/weak/weak.lua"
expect_output "names the unknown option" "kmsrun mutants: unknown option --no-such-flag"
expect_output "then the usage" "usage: kmsrun mutants RUNBOOK.lua"
run "a bad --jobs is a usage error" 2 "$KMSRUN" mutants --jobs=0 "$WORK/weak/weak.lua"
expect_output "says what --jobs expects" "kmsrun mutants: --jobs expects a positive integer, got '0'"
run "--jobs without a value is a usage error" 2 "$KMSRUN" mutants "$WORK/weak/weak.lua" --jobs
expect_output "says --jobs needs a value" "kmsrun mutants: --jobs needs a value (N)"
run "a run-only option is refused" 2 "$KMSRUN" mutants --events - "$WORK/weak/weak.lua"
expect_output "says it does not apply" "kmsrun mutants: --events does not apply to mutants"

finish
