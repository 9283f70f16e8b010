-- Failure modes of the guest agent behind a real dstack-kms, reproduced by the emulator
-- behind switches (docs/emulator.md, "Guest-agent failure modes"), so that kmsrun's
-- diagnosis of each can be tested without dstack binaries:
--
--   vm_config          the vm_config the quote attests (self-check, receiver check)
--   reported_vm_config what the guest agent's Info reports (GetAttestationInfo decodes
--                      with it: onboard_service.rs:190-212); different from vm_config
--                      it is the stock simulator files' split OS image hash
--   unverifiable_quote the KMS cannot verify its own quote (why): the simulator's
--                      patched, unsigned fixture quote, or trust anchors that do not
--                      match its signer; every verification of its quotes fails
--   identity_from      (serve.lua) the identity derives from these bytes alone, as a
--                      real KMS's derives from its guest agent's attestation: two
--                      instances given the same bytes share one mr_aggregated
local cjson = require "cjson.safe"
local crypto = require "kmsrun.crypto"
local hex = require "kmsrun.lib.hex"

local M = {}

local function os_image_hash(vm_config, what)
  local t = cjson.decode(vm_config)
  if type(t) ~= "table" then return nil, what .. " is not a JSON object" end
  local h = t.os_image_hash
  if h == nil then return "" end
  if type(h) ~= "string" or #h % 2 ~= 0 or not h:match("^%x*$") then return nil, what .. ": os_image_hash must be hex" end
  return hex.decode(h)
end

--- Applies opts (vm_config, reported_vm_config, unverifiable_quote) to identity id;
-- returns the guest-agent options for attestation.agent, or nil, err.
function M.apply(id, opts)
  local agent = {}
  if opts.vm_config then
    local h, err = os_image_hash(opts.vm_config, "--vm-config")
    if not h then return nil, err end
    id.vm_config, id.os_image_hash = opts.vm_config, h
  end
  -- Passed on as the guest agent would report it: a malformed one is the KMS's
  -- problem to report ("Failed to decode app info: decode app info: ...").
  if opts.reported_vm_config then agent.reported_vm_config = opts.reported_vm_config end
  if opts.unverifiable_quote then id.unverifiable = opts.unverifiable_quote end
  return agent
end

--- The --identity-from inputs: compose bytes and a salt, both from the bytes alone.
function M.identity_inputs(bytes)
  return { compose = bytes, salt = crypto.hex(crypto.sha256("kmsrun-sim:identity-from:" .. bytes):sub(1, 16)) }
end

--- The message of a quote that does not verify (attestation.verify); dcap-qvl's own
-- wording is not reproduced (docs/targets/local.md, "Not yet confirmed").
function M.unverifiable_message(why)
  return "quote verification failed (kms-sim emulator: unverifiable quote: " .. tostring(why) .. ")"
end

return M
