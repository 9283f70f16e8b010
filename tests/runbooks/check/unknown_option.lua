-- check: an unknown option name in a case body (only the dry run sees it).
runbook { description = "check: unknown rpc option" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo", nil, { sav = "attestation" }))
end)
