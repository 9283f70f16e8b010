-- What capture_attestation checks beyond the fields, on every target, so that a
-- topology that cannot mean what the cases claim is a setup error, not a wrong case:
--   * two KMS with one mr_aggregated: deny_by_mr(src) would deny dst too;
--   * a KMS that cannot verify its own quote: every later case would fail on it;
--   * GetAttestationInfo reporting another OS image than the one attested (the
--     stock simulator files' split vm_config): allow(src) would then be denied
--     with "OS image is not allowed" by the self-check. A warning; the handle's
--     os_image_hash becomes the attested one (what every check judges by) and
--     allow / deny_by_mr list both (kms/policies.lua), so the cases keep testing what
--     they claim.
local steps = require "kmsrun.dsl.steps"

local M = {}

--- Seconds a "cannot verify its own quote" answer must persist before wait_ready reports
-- it instead of waiting on: a tenth of the wait, 2 to 30 s (the KMS fetches collateral
-- from its PCCS at each verification; a CVM's network may take a moment).
function M.verify_grace(timeout)
  return math.max(2, math.min(30, (timeout or 30) * 0.1))
end

--- Whether an answer says the KMS could not verify its own quote
-- (onboard_service.rs:184-188, "Failed to verify attestation").
function M.unverifiable(res)
  return res ~= nil and res.status ~= 200
    and tostring(res.error or res.raw or ""):find("Failed to verify attestation", 1, true) ~= nil
end

--- The failure for an attestation info call that did not succeed (res not ok).
function M.failed_call(h, res)
  local err = tostring(res.error or res.raw)
  if M.unverifiable(res) then
    steps.fail(h.name .. " verifying its own quote (GetAttestationInfo)",
      string.format("HTTP %d %s", res.status, err),
      h.name .. " cannot verify the quotes of its guest agent: they are not signed by a root its kms.toml "
        .. "trusts ([core.attestation] root_ca, urls.pccs; on the local target: the run's mock_attestation_seed "
        .. "and collateral service). Every case would fail on this, so setup stops here.", "INFRA")
  end
  steps.fail("attestation info of " .. h.name, string.format("HTTP %d %s", res.status, err))
end

--- Raises a setup error when two captured KMS share one mr_aggregated.
-- kmss: every declared KMS (those with .attestation are compared).
function M.distinct(kmss)
  local seen = {}
  for _, h in ipairs(kmss) do
    local mr = h.attestation and h.attestation.mr_aggregated
    if mr then
      if seen[mr] then
        steps.fail("distinct identities (mr_aggregated) for " .. seen[mr].name .. " and " .. h.name,
          string.format("%s and %s report the same mr_aggregated: the cases cannot tell them apart", seen[mr].name, h.name),
          "mr_aggregated " .. mr .. ". Give each KMS its own identity (on the local target: simulator_dirs with "
            .. "a different attestation.bin per KMS).", "INFRA")
      end
      seen[mr] = h
    end
  end
end

local function os_image_hash(vm_config)
  local t = type(vm_config) == "string" and require("kmsrun.lib.json").decode(vm_config)
  local v = type(t) == "table" and t.os_image_hash
  return type(v) == "string" and v:lower() or nil
end

--- A warning (a note in the report) when the target knows the attested vm_config and
-- GetAttestationInfo reported another OS image; the handle then carries the attested one.
function M.vm_config(run, h)
  local attested = run.target.attested_vm_config and run.target.attested_vm_config(run.target_ctx, h)
  local a = os_image_hash(attested)
  local reported = h.attestation and h.attestation.os_image_hash
  if a and reported and a ~= reported:lower() then
    local msg = string.format("warning: %s: GetAttestationInfo reports os_image_hash %s but its quote attests %s "
      .. "(the self-check and the receiver check judge by the attested one); %s.attestation.os_image_hash is the "
      .. "attested one from here on, and allow(%s) and deny_by_mr(%s) list both", h.name, reported, a, h.name, h.name, h.name)
    -- The evidence file keeps what GetAttestationInfo said.
    h.attestation.os_image_hash, h.attestation.reported_os_image_hash = a, reported
    run:note(msg)
    return msg
  end
end

return M
