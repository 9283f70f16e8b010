-- check: a misspelt local ("srcc") is a global the environment lacks; the
-- suggestion comes from the locals in scope.
runbook { description = "check: misspelt local" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(srcc, "Onboard.GetAttestationInfo"))
end)
