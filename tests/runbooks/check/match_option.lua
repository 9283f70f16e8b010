-- check: an unknown option of expect_error's match table.
runbook { description = "check: unknown match option" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }), { contain = "not allowed" })
end)
