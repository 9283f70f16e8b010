-- check: a misspelt assertion in a case body ("expect_eror").
runbook { description = "check: unknown assertion" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap denied", function()
  local res = rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" })
  expect_eror(res, "KMS is not allowed to bootstrap: ")
end)
