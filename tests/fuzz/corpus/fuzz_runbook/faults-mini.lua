-- Fault matrix: one KMS through bootstrap, finish and a runtime RPC, with the knobs
-- the fault rows need, from the environment (read at load time, where `var` is not):
--   FAULT_WAIT_TIMEOUT  wait_ready's timeout (default 30)
--   FAULT_CASE_TIMEOUT  the case's deadline (default none: the target's)
--   FAULT_STEP_TIMEOUT  wraps the bootstrap RPC in step(..., {timeout = N})
--   FAULT_TEARDOWN_SLEEP  a teardown that writes the archive, then sleeps N s
--                       (a window in which the evidence archive exists)
runbook {
  description = "TEST: one KMS, bootstrap, finish, GetMeta",
  requires = { targets = { "sim" } },
}

local wait_timeout = tonumber(os.getenv("FAULT_WAIT_TIMEOUT") or "30")
local case_timeout = tonumber(os.getenv("FAULT_CASE_TIMEOUT") or "")
local step_timeout = tonumber(os.getenv("FAULT_STEP_TIMEOUT") or "")
local teardown_sleep = tonumber(os.getenv("FAULT_TEARDOWN_SLEEP") or "")

local auth = auth_server("auth-a")
local k = kms("kms-a", { auth = auth })

setup("deploy and wait", function()
  deploy(k)
  wait_ready(k, { timeout = wait_timeout })
  capture_attestation(k)
end)

case("bootstrap, finish, GetMeta", { timeout = case_timeout }, function()
  set_policy(auth, allow(k))
  local function bootstrap()
    return rpc(k, "Onboard.Bootstrap", { domain = "kms-a.example.test" }, { save = "bootstrap" })
  end
  local res
  if step_timeout then
    res = step("bootstrap within its step deadline", bootstrap, { timeout = step_timeout })
  else
    res = bootstrap()
  end
  expect_ok(res, { "ca_pubkey", "k256_pubkey" })
  finish(k)
  wait_ready(k, { timeout = wait_timeout })
  expect_ok(rpc(k, "KMS.GetTempCaCert", nil, { save = "temp-ca" }), { "temp_ca_cert" })
  expect_ok(rpc(k, "KMS.GetMeta"), { "ca_cert" })
end)

if teardown_sleep then
  teardown(function()
    archive()
    sleep(teardown_sleep)
  end)
end
