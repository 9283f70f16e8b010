-- check: a syntax error is reported at its line, and nothing else is analysed.
runbook { description = "check: syntax error" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
case("broken", function()
  local res = = rpc(src, "KMS.GetMeta")
end)
