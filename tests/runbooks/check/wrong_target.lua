-- check: a runbook that does not support the chosen target (sim by default).
runbook {
  description = "check: unsupported target",
  requires = { targets = { "vmm" } },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
