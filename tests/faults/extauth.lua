-- Cleanup test: an external auth server whose policy file the run rewrites
-- (FAULT_AUTH_URL, FAULT_POLICY_PATH, read at load time); the case then waits,
-- so the test can SIGKILL the run and check that `kmsrun cleanup` restores the file.
runbook {
  description = "TEST: flip the policy file of an external auth server, then wait",
  requires = { targets = { "sim" } },
}

local auth = auth_server("ext", { url = os.getenv("FAULT_AUTH_URL"), config_path = os.getenv("FAULT_POLICY_PATH") })
local k = kms("kms-a", { auth = auth })

setup("deploy", function()
  deploy(k)
  wait_ready(k)
  capture_attestation(k)
end)

case("flip the policy, then wait to be killed", function()
  set_policy(auth, allow(k))
  log("policy flipped")
  sleep(60)
end)
