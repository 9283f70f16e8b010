-- tests/security/test_replay_curl.lua: case and step names that would run a command
-- if `kmsrun replay --curl` pasted them into its script unquoted, and one RPC (to a
-- fake KMS the test serves) so the transcript holds them.
runbook {
  description = "TEST: hostile case and step names",
  requires = { targets = { "sim" } },
  vars = { kms_url = { required = true, help = "the fake KMS" } },
}

local auth = auth_server("auth-unused")
local fake = kms("fake-kms", { auth = auth })

setup("point the handle at the fake KMS", function()
  fake.deployed, fake.mode = true, "onboard"
  fake.onboard_url, fake.runtime_url = var.kms_url, var.kms_url
  fake.guest = { onboard_url = var.kms_url, runtime_url = var.kms_url }
end)

case("x\ntouch PWNED_case\n$(touch PWNED_case2) `touch PWNED_case3` '; touch PWNED_case4; '", function()
  step("y\ntouch PWNED_step\r\27[2K\27[1Afake line", function()
    rpc(fake, "Onboard.GetAttestationInfo", { note = "'$(touch PWNED_body)'\n" })
  end)
end)
