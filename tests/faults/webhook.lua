-- Fault matrix: the KMS's auth webhook misbehaves. The auth server is external, at
-- FAULT_AUTH_URL (an environment variable the test harness sets, read when the runbook loads), so a
-- test can point it at a dead port or at tests/faults/fault_server.lua.
-- FAULT_CASE_TIMEOUT bounds the case (a hanging webhook hangs the RPC);
-- FAULT_WAIT_TIMEOUT bounds wait_ready (GetAttestationInfo asks the webhook too).
runbook {
  description = "TEST: bootstrap against a misbehaving auth webhook",
  requires = { targets = { "sim" } },
}

local auth = auth_server("auth-faulty", { url = os.getenv("FAULT_AUTH_URL") or "http://127.0.0.1:1" })
local k = kms("kms-a", { auth = auth })

setup("deploy", function()
  deploy(k)
  wait_ready(k, { timeout = tonumber(os.getenv("FAULT_WAIT_TIMEOUT") or "10") })
  capture_attestation(k)
end)

case("bootstrap consults the webhook", { timeout = tonumber(os.getenv("FAULT_CASE_TIMEOUT") or "30") }, function()
  local res = rpc(k, "Onboard.Bootstrap", { domain = "kms-a.example.test" }, { save = "bootstrap" })
  expect_ok(res, { "ca_pubkey" })
end)
