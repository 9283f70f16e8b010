-- check: a plain Lua error inside a case body, at the runbook line.
runbook { description = "check: Lua error in a case" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  local info = nil
  expect(info.mr_aggregated ~= nil, "an MR")
end)
