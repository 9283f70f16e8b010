-- sim_guest_mode: the emulator's guest-agent failure modes (emu/kms/guest_modes.lua)
-- on the sim target, to show kmsrun's diagnosis of what a real dstack-kms meets with
-- the dstack simulator (docs/targets/local.md):
--   shared-identity    every attested KMS derives its identity from the same bytes,
--                      as copies of one attestation.bin give one mr_aggregated
--   split-vm-config    GetAttestationInfo reports another OS image than the attested
--                      one, as the stock simulator files do
--   unverifiable-quote no KMS can verify its own quote, as with an unseeded simulator
--                      or kms.toml without the development root
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"

local M = {}

M.MODES = { ["shared-identity"] = true, ["split-vm-config"] = true, ["unverifiable-quote"] = true }

--- The emulator arguments for the comma-separated modes, for a KMS with work directory
-- work; or nil, err for an unknown mode.
function M.argv(modes, work)
  local argv = {}
  for mode in (modes or ""):gmatch("[^,%s]+") do
    if not M.MODES[mode] then
      return nil, "sim_guest_mode: unknown mode '" .. mode .. "' (shared-identity, split-vm-config, unverifiable-quote)"
    end
    if mode == "shared-identity" then
      local path = work .. "/shared-identity.bin"
      fs.write(path, "kmsrun sim_guest_mode=shared-identity: one guest-agent identity for every KMS\n")
      argv[#argv + 1], argv[#argv + 2] = "--identity-from", path
    elseif mode == "split-vm-config" then
      argv[#argv + 1] = "--reported-vm-config"
      argv[#argv + 1] = string.format('{"os_image_hash":"%s","cpu_count":1,"memory_size":2147483648}',
        crypto.hex(crypto.sha256("kmsrun sim_guest_mode=split-vm-config: the reported OS image")))
    else
      argv[#argv + 1] = "--unverifiable-quote"
      argv[#argv + 1] = "the guest agent's quotes are not signed by a root kms.toml trusts (sim_guest_mode)"
    end
  end
  return argv
end

--- The vm_config an emulated KMS attests, from its startup log line, for
-- capture_attestation's comparison with GetAttestationInfo.
function M.attested_vm_config(log_path)
  local h = (fs.read(log_path) or ""):match("starting: image=[^\n]- os_image_hash=(%x+)")
  return h and string.format('{"os_image_hash":"%s"}', h) or nil
end

return M
