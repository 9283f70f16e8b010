-- check: a KMS used before anything deploys it.
runbook { description = "check: rpc before deploy" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
