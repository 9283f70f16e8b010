#!/bin/bash
# Runbooks compose: a runbook in a temp dir with a helper module next to it passes
# `check` (which runs the helper for real and says so) and runs, invoked from
# another directory (whose own same-named module must not be picked); a
# parameterized topology (runbooks/replicas.lua) runs with --var replicas=2 and =8.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
mkdir -p "$WORK/book/lib" "$WORK/elsewhere/lib"
cat >"$WORK/book/lib/cluster.lua" <<'LUA'
-- A helper module: it gets the DSL explicitly.
local dsl = require "kmsrun.dsl"
local M = {}
function M.nodes(auth, n)
  local list = {}
  for i = 1, n do list[i] = dsl.kms("kms-" .. i, { auth = auth }) end
  return list
end
function M.bootstrap(auth, k, domain)
  dsl.set_policy(auth, dsl.allow(k))
  return dsl.expect_ok(dsl.rpc(k, "Onboard.Bootstrap", { domain = domain }), { "k256_pubkey" })
end
return M
LUA
cat >"$WORK/elsewhere/lib/cluster.lua" <<'LUA'
error("the module in the current directory was loaded instead of the runbook's")
LUA
cat >"$WORK/book/two.lua" <<'LUA'
runbook { description = "TEST: a helper module next to the runbook", vars = { n = { default = "2" } } }
local cluster = require "lib.cluster"
local auth = auth_server("auth")
local nodes = cluster.nodes(auth, tonumber(var.n))
setup(function()
  deploy(table.unpack(nodes))
  wait_ready(table.unpack(nodes))
  capture_attestation(table.unpack(nodes))
end)
case("kms-1 bootstraps through the helper", function() cluster.bootstrap(auth, nodes[1], "a.example.test") end)
LUA
cd "$WORK/elsewhere"
run "check passes from another directory" 0 "$KMSRUN" check "$WORK/book/two.lua" --var n=3
expect_output "check says it ran the helper for real" "helper modules loaded and run for real against the dry DSL (host calls simulated): $WORK/book/lib/cluster.lua"
expect_output "the parameterized topology is checked" "no mistakes found (1 cases, 3 kms, 1 auth servers, 1 rpc calls"
run "the runbook runs from another directory" 0 "$KMSRUN" -q --out "$WORK/o-two" "$WORK/book/two.lua" --var n=3
if [ "$(ls "$WORK/o-two/attestation" | wc -l)" -eq 3 ]; then ok "three instances deployed (--var n=3 at load time)"; else not_ok "three instances" "$(ls "$WORK/o-two/attestation")"; fi
if grep -q "lib/cluster.lua:11" "$WORK/o-two/report.json"; then ok "the helper's step is located at the helper's line"
else not_ok "helper step location" "$(grep -o '"location":"[^"]*"' "$WORK/o-two/report.json" | sort -u)"; fi

# A mistake inside the helper is reported at the helper's line by check.
sed -i 's/"Onboard.Bootstrap"/"Onboard.Bootstrapp"/' "$WORK/book/lib/cluster.lua"
run "check finds a mistake in the helper" 2 "$KMSRUN" check "$WORK/book/two.lua"
expect_output "at the helper's line" "$WORK/book/lib/cluster.lua:11: rpc: unknown method 'Onboard.Bootstrapp'"
echo 'return {}' >"$WORK/book/lib/cluster.lua"
sed -i 's/require "lib.cluster"/require "lib.nothere"/' "$WORK/book/two.lua"
run "a missing helper is a runbook error" 2 "$KMSRUN" -q --out "$WORK/o-missing" "$WORK/book/two.lua"
expect_output "says where it looked" "no module 'lib.nothere' next to the runbook (tried $WORK/book/lib/nothere.lua"

# The N-replica runbook at two sizes.
for n in 2 8; do
  run "replicas.lua with --var replicas=$n" 0 "$KMSRUN" -q --out "$WORK/r$n" --var replicas=$n "$SRC/runbooks/replicas.lua"
  if $PY - "$WORK/r$n/report.json" "$n" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert r["status"] == "passed", r["status"]
eq = [s for c in r["cases"] for s in c["steps"] if s["name"].startswith("expect_eq ")]
assert len(eq) == n - 1 and all(s["status"] == "passed" for s in eq), [s["name"] for s in eq]
PYEOF
  then ok "replicas=$n: $((n - 1)) replicas serve kms-1's key"; else not_ok "replicas=$n report"; fi
done
run "replicas=1 is refused at load" 2 "$KMSRUN" -q --out "$WORK/r1" --var replicas=1 "$SRC/runbooks/replicas.lua"
expect_output "with the reason" "var.replicas must be an integer >= 2, got '1'"
finish
