-- Fault matrix, bad input: a runbook whose KMS handle points at a URL the test
-- controls (tests/faults/fault_server.lua or raw_server.py), so every hostile
-- answer reaches the DSL's rpc, the transcript, the redactor and the report.
--
-- The DSL has no declaration for "a KMS already running at URL"; this runbook sets
-- the handle's fields in setup (deployed, mode, onboard_url, runtime_url, guest).
runbook {
  description = "TEST: rpc against a fake KMS that answers garbage",
  requires = { targets = { "sim" } },
  vars = {
    kms_url = { required = true, help = "base URL of the fake KMS (http:// for Onboard.*, https:// for KMS.*)" },
    method = { default = "Onboard.GetAttestationInfo", help = "the prpc method to call" },
    rpc_timeout = { default = "5", help = "the RPC's timeout in seconds" },
  },
}

local auth = auth_server("auth-unused")
local fake = kms("fake-kms", { auth = auth })

setup("point the handle at the fake KMS", function()
  fake.deployed, fake.mode = true, "onboard"
  fake.onboard_url, fake.runtime_url = var.kms_url, var.kms_url
  fake.guest = { onboard_url = var.kms_url, runtime_url = var.kms_url }
end)

case("the fake KMS answers", function()
  local res = rpc(fake, var.method, nil, { timeout = tonumber(var.rpc_timeout), save = "answer" })
  expect_ok(res, { "device_id" })
end)
