-- check: a misspelt request field (the KMS would silently ignore it).
runbook { description = "check: unknown request field" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_error(rpc(src, "Onboard.Bootstrap", { domian = "kms-src.example.test" }), { any = true })
end)
