-- check: needs naming a case that does not exist.
runbook { description = "check: needs an unknown case" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }))
end)
case("attestation", { needs = { "bootstrapp" } }, function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
