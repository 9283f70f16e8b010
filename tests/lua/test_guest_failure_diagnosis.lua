-- kmsrun's diagnosis of the failure modes a real dstack-kms meets with the dstack
-- simulator, reproduced by the emulator on the sim target (sim_guest_mode): each gives
-- its own clear setup error or warning, never a timeout or a wrong case failing.
-- The same modes on the local target: tests/e2e/test_local_self_auth.sh.
local T = require "kmsrun.lib.testing"
local H = dofile((os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/fakes/harness.lua")
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"

local RUNBOOK = H.SRC .. "/runbooks/self_auth.lua"

local function sim(mode)
  return H.kmsrun({ "--target", "sim", "--var", "sim_guest_mode=" .. mode, RUNBOOK }, { timeout = 120 })
end

T.test("shared identity: a setup error naming both KMS, before any case", function()
  local r = sim("shared-identity")
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "kms-src and kms-dst report the same mr_aggregated: the cases cannot tell them apart")
  T.match(r.output, "cases: 0 passed, 0 failed, %d+ skipped")
  T.contains(r.output, "setup failed: step 'capture_attestation kms-src, kms-dst'")
end)

T.test("unverifiable quote: wait_ready says the KMS cannot verify its own quote, within seconds", function()
  local r = sim("unverifiable-quote")
  T.eq(r.code, 3, r.output)
  -- kms-src or kms-dst, whichever wait_ready hears first.
  T.match(r.output, "expected: kms%-[sd][rs][ct] verifying its own quote %(GetAttestationInfo%)")
  T.contains(r.output, "Failed to verify attestation: ")
  T.contains(r.output, "cannot verify the quotes of its guest agent")
  T.ok(not r.output:find("within 30 s", 1, true), "not a timeout:\n" .. r.output)
  local report = json.decode(fs.read(r.out .. "/report.json"))
  T.ok(report.duration == nil or report.duration < 20, "reported well before the 30 s wait_ready timeout")
end)

T.test("split vm_config: a warning per KMS, the policies list both images, the five cases mean what they say", function()
  local r = sim("split-vm-config")
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "warning: kms-src: GetAttestationInfo reports os_image_hash ")
  T.contains(r.output, "allow(kms-src) and deny_by_mr(kms-src) list both")
  T.match(r.output, "cases: %d+ passed, 0 failed, 0 skipped")
  T.contains(fs.read(r.out .. "/report.json") or "", "GetAttestationInfo reports os_image_hash", "the warning is in the report")
end)

T.test("no mode: no warning and no setup error", function()
  local r = sim("")
  T.eq(r.code, 0, r.output)
  T.ok(not r.output:find("warning:", 1, true), r.output)
end)

T.test("an unknown mode is a deploy error naming the known ones", function()
  local r = sim("no-such-mode")
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "sim_guest_mode: unknown mode 'no-such-mode' (shared-identity, split-vm-config, unverifiable-quote)")
end)

T.test("cleanup", function() H.cleanup() end)
