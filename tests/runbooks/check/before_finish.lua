-- check: a KMS.* method while the KMS is still in onboard mode.
runbook { description = "check: runtime method before finish" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("meta", function()
  expect_ok(rpc(src, "KMS.GetMeta"))
end)
