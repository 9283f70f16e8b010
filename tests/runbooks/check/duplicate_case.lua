-- check: two cases with the same name.
runbook { description = "check: duplicate case" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"), { "mr_aggregated" })
end)
