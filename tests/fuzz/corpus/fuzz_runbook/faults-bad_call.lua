-- Fault matrix: misuse of a primitive at run time (inside a case), which only
-- shows when the case runs. FAULT_BAD_CALL picks the mistake.
runbook {
  description = "TEST: a DSL primitive called with wrong arguments inside a case",
  requires = { targets = { "sim" } },
}

local auth = auth_server("auth-a")
local k = kms("kms-a", { auth = auth })
local mistake = os.getenv("FAULT_BAD_CALL") or "rpc-method"

setup("deploy", function()
  deploy(k)
  wait_ready(k)
end)

case("a primitive is misused", function()
  if mistake == "rpc-method" then
    rpc(k, 42)
  elseif mistake == "wait-option" then
    wait_ready(k, { timout = 1 })
  elseif mistake == "rpc-option" then
    rpc(k, "Onboard.GetAttestationInfo", nil, { retries = 3 })
  elseif mistake == "expect-type" then
    expect_ok("not a response")
  end
end)
