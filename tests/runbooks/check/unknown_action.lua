-- check: a misspelt DSL action ("deploi"), suggested by edit distance.
runbook { description = "check: unknown action" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploi(src)
  wait_ready(src)
end)
case("meta", function()
  expect_ok(rpc(src, "Onboard.GetAttestationInfo"))
end)
