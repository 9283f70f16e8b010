-- check: an unknown option of wait_ready.
runbook { description = "check: unknown wait_ready option" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src, { timout = 60 })
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
