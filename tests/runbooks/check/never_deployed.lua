-- check: a KMS declared, then forgotten.
runbook { description = "check: declared but never deployed" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
local spare = kms("kms-spare", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
