-- check: reading a misspelt field of a response body (nil at run time).
runbook { description = "check: misspelt body field" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("attestation", function()
  local info = rpc(src, "Onboard.GetAttestationInfo").body
  expect(#info.mr_agregated == 64, "a 32-byte MR")
end)
