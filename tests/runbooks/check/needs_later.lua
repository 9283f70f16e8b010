-- check: needs naming a case declared after it (cases run in declaration order).
runbook { description = "check: needs a later case" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", { needs = { "bootstrap" } }, function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
case("bootstrap", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }))
end)
