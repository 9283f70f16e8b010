-- check: a wrong argument type: the auth server's name instead of its handle.
runbook { description = "check: wrong argument type" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
  capture_attestation(src)
end)
case("allow", function()
  set_policy("auth-src", allow(src))
end)
