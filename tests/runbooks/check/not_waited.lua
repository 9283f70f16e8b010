-- check: a KMS.* call right after finish, without waiting for the runtime endpoint.
runbook { description = "check: missing wait_ready after finish" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap, then meta", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }))
  finish(src)
  expect_ok(rpc(src, "KMS.GetMeta"))
end)
