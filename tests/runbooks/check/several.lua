-- check: several mistakes in one case body are all reported, not just the first,
-- and the cases after it are still checked.
runbook { description = "check: several mistakes" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("many", function()
  rpc(src, "KMS.GetMeta", nil, { sav = "meta" })
  expect_ok(rpc(src, "Onboard.GetAttestationInf"))
  set_policy("auth-src", deny_all())
end)
case("after", function()
  deploy(src)
end)
