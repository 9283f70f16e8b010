-- check: an action at the top level, outside setup / case / teardown.
runbook { description = "check: action while loading" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
deploy(src)
setup(function()
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
