-- check: a policy built from a KMS whose attestation was never captured.
runbook { description = "check: allow before capture_attestation" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("allow", function()
  set_policy(auth, allow(src))
end)
