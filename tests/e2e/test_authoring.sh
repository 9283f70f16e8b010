#!/bin/bash
# What issue 13 found misleading, now behaving as documented: a hand-built policy
# is checked against auth-simple's schema (run and check), policy(name, config)
# names it; expect_eq with a nil fails the step and --keep-going goes on;
# finish(kms, {save}) keeps the answer; parallel outside step() is one step at its
# line; a crash fault is reported as a crash.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
cat >"$WORK/a.lua" <<'LUA'
runbook { description = "TEST: authoring" }
local auth = auth_server("auth")
local a = kms("kms-a", { auth = auth })
local b = kms("kms-b", { auth = auth })
setup(function() deploy(a, b) wait_ready(a, b) capture_attestation(a, b) end)
case("a named hand-built policy lets kms-a bootstrap", function()
  set_policy(auth, policy("kms-a by hand", { osImages = { "0x" .. a.attestation.os_image_hash },
    kms = { mrAggregated = { "0x" .. a.attestation.mr_aggregated } } }))
  expect_ok(rpc(a, "Onboard.Bootstrap", { domain = "a.example.test" }))
  finish(a, { save = "finish-a" })
  wait_ready(a)
end)
case("expect_eq with a nil fails the step", function()
  local meta = rpc(a, "KMS.GetMeta").body
  expect_eq(meta.k256_pubkee, nil, "a misspelt field")
end)
case("parallel outside a step is one step", function()
  local x, y = parallel(function() return rpc(a, "KMS.GetMeta") end, function() return rpc(b, "Onboard.GetAttestationInfo") end)
  expect_ok(x) expect_ok(y)
end)
case("GetTempCaCert answers", { needs = { "a named hand-built policy lets kms-a bootstrap" } }, function()
  expect_ok(rpc(a, "KMS.GetTempCaCert"), { "temp_ca_cert" })
end)
LUA
run "the run fails on the nil comparison only" 1 "$KMSRUN" --keep-going --out "$WORK/o" "$WORK/a.lua"
expect_output "the nil is named" "expected: a non-nil expected value (nil: a missing field? use expect(x == nil, ...) for absence)"
expect_output "the named policy is shown" "set_policy auth = kms-a by hand"
expect_output "--keep-going went on" "cases: 3 passed, 1 failed, 0 skipped"
[ -s "$WORK/o/rpc/finish-a.json" ] && grep -q '"GET /finish"' "$WORK/o/rpc/finish-a.json" && ok "finish saved its answer" || not_ok "finish saved its answer"
if $PY - "$WORK/o/report.json" "$WORK/a.lua" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["cases"][2]
s = c["steps"][0]
assert s["name"] == "parallel (2 branches)" and s["location"] == sys.argv[2] + ":18", s
assert [x["name"] for x in c["steps"][1:]] == ["expect_ok KMS.GetMeta", "expect_ok Onboard.GetAttestationInfo"], c["steps"]
PYEOF
then ok "parallel: one step at its line, then the expectations"; else not_ok "parallel step" "$(grep -o '"name":"parallel[^}]*' "$WORK/o/report.json")"; fi

# A hand-built policy auth-simple would misread is an error at its line, in run and check.
sed 's/kms = { mrAggregated = { "0x" .. a.attestation.mr_aggregated } } }))/kms = { mrAggregated = "0x" .. a.attestation.mr_aggregated } }))/' "$WORK/a.lua" >"$WORK/bad1.lua"
run "a wrongly typed config fails the run" 2 "$KMSRUN" -q --out "$WORK/o1" "$WORK/bad1.lua"
expect_output "says what auth-simple would do" "not a valid auth-simple config (ZodError: kms.mrAggregated: Expected array, received string): auth-simple would replace it by its defaults and deny everything"
run "check finds it too" 2 "$KMSRUN" check "$WORK/bad1.lua"
expect_output "at its line" "bad1.lua:7: policy \"kms-a by hand\": not a valid auth-simple config"
sed 's/set_policy(auth, policy("kms-a by hand", {/set_policy(auth, { description = "wrapped", config = {/; s/kms = { mrAggregated = { "0x" .. a.attestation.mr_aggregated } } }))/kms = { mrAggregated = {} } } })/' "$WORK/a.lua" >"$WORK/bad2.lua"
run "a {description, config} wrapper is refused" 2 "$KMSRUN" check "$WORK/bad2.lua"
expect_output "names the fix" "this looks like a {description, config} pair"
sed 's/osImages = {/osImage = {/' "$WORK/a.lua" >"$WORK/bad3.lua"
run "an unknown key is refused" 2 "$KMSRUN" check "$WORK/bad3.lua"
expect_output "names the key" "'osImage' is not an auth-simple key (auth-simple ignores it; keys: "

# A crash fault: the step says the instance crashed.
run "a crash fails the run" 1 "$KMSRUN" -q --out "$WORK/o2" --var sim_faults=crash=KMS.GetTempCaCert --case 4 "$WORK/a.lua"
expect_output "named as a crash" "kms-a crashed during the call: its process exited (exited 1)"
finish
