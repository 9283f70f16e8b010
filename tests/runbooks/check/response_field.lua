-- check: expect_ok naming a field the method's answer does not have.
runbook { description = "check: unknown response field" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }), { "ca_pubkey", "k256_pubky" })
end)
