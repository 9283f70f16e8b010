-- check: an Onboard.* method after finish (the onboard endpoint is gone).
runbook { description = "check: onboard method after finish" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap twice", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }))
  finish(src)
  wait_ready(src)
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }), { any = true })
end)
