-- tests/security/test_late_secret.lua: a value is marked secret after files holding
-- it were written (the attestation evidence) and it reaches a log kmsrun did not
-- write itself (the auth server's decision log).
runbook { description = "TEST: a secret marked late", requires = { targets = { "sim" } } }

local auth = auth_server("auth-a")
local k = kms("kms-a", { auth = auth })

setup("deploy", function()
  deploy(k)
  wait_ready(k)
  capture_attestation(k)
  secret(k.attestation.device_id)
end)

case("bootstrap", function()
  set_policy(auth, allow(k))
  local res = rpc(k, "Onboard.Bootstrap", { domain = "kms-a.example.test" })
  expect_ok(res, { "ca_pubkey" })
end)
