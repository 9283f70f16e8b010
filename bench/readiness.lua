-- bench/run's readiness row (a runbook, run on the sim target with
-- --var sim_faults=listen-delay=1): one emulator whose every listener opens 1 s late.
-- bench/readiness_parse.lua compares the emulator's "listening on" log lines with the
-- end of the wait_ready steps in the --events stream.
runbook {
  description = "bench: time from an emulator's listener opening to wait_ready returning",
  requires = { targets = { "sim" } },
}

local auth = auth_server("auth-bench")
local k = kms("kms-ready", { auth = auth })

setup("onboard listener", function()
  deploy(k)      -- the onboard listener opens during deploy (listen-delay), which waits for its announcement
  wait_ready(k)  -- then probes Onboard.GetAttestationInfo
  capture_attestation(k)
  set_policy(auth, allow(k))
end)

case("runtime listener", function()
  expect_ok(rpc(k, "Onboard.Bootstrap", { domain = "bench.example.test" }), { "k256_pubkey" })
  finish(k)
  wait_ready(k)  -- the runtime TLS listener opens during this wait (listen-delay after the switch)
end)
