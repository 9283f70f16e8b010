-- check: the right method in the wrong service (Bootstrap is Onboard's).
runbook { description = "check: wrong service" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_error(rpc(src, "KMS.Bootstrap", { domain = "kms-src.example.test" }), { any = true })
end)
