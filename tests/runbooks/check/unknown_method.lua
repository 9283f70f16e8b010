-- check: a misspelt RPC method name.
runbook { description = "check: unknown method" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInf"))
end)
