-- The sim target's emulator knobs and attested callers: kms() options turned into kms-sim
-- flags, sim_mutation split between the KMS and the auth emulators, and attesters that
-- derive a caller's identity exactly as the emulator derives an instance's (same inputs,
-- same emu/kms/identity.lua), so the emulated KMS accepts what they present.
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local identity = require "kmsrun.emu.kms.identity"
local ratls = require "kmsrun.emu.kms.ratls"
local registry = require "kmsrun.emu.mutations"

local M = {}

--- The raw PPID of a device label (kms(..., {device = "rack-2"})): different labels are
-- different machines; the default label is the one every instance shares.
function M.ppid(label)
  return identity.device_ppid(label)
end

--- kms-sim flags for the emulator knobs of a kms() spec.
function M.knob_args(spec)
  local argv = {}
  if spec.device then argv[#argv + 1] = "--device"; argv[#argv + 1] = crypto.hex(M.ppid(spec.device)) end
  if spec.tcb_status then argv[#argv + 1] = "--tcb-status"; argv[#argv + 1] = spec.tcb_status end
  for _, a in ipairs(spec.advisories or {}) do argv[#argv + 1] = "--advisory"; argv[#argv + 1] = a end
  if spec.old_format_cert then argv[#argv + 1] = "--old-format-cert" end
  return argv
end

--- With kms(..., {verify_images = {names}}): an image server on loopback that has exactly
-- those OS images (GET /<os_image_hash hex>.tar.gz answers 200, anything else 404), for the
-- emulator's image verification. Returns its download_url template, or nil when unused.
function M.image_server(ctx, h)
  local names = h.spec.verify_images
  if not names then return nil end
  local have = {}
  for _, n in ipairs(names) do have[crypto.hex(identity.os_image_hash(n)) .. ".tar.gz"] = n end
  local srv, err = require("kmsrun.lib.http_server").listen(function(req)
    local file = req.path:match("^/([%x]+%.tar%.gz)$")
    if req.method == "GET" and file and have[file] then
      return 200, "kmsrun sim image " .. have[file] .. " (emulated, no content)\n", { ["Content-Type"] = "application/gzip" }
    end
    return 404, "no such image\n", { ["Content-Type"] = "text/plain" }
  end, { host = "127.0.0.1", port = 0 })
  if not srv then return nil, "cannot start the image server of " .. h.name .. ": " .. tostring(err) end
  ctx:defer("stop the image server of " .. h.name, function() srv:close() end)
  return srv:url("/{OS_IMAGE_HASH}.tar.gz")
end

--- sim_mutation split by emulator: { kms = {...}, auth = {...} } | nil, error.
function M.mutations(spec)
  return registry.split(spec or "")
end

function M.auth_mutations(ctx)
  local s = registry.split(ctx.vars.sim_mutation or "")
  return s and s.auth or {}
end

-- The identity inputs of a deployed kms handle: what sim.lua gave its kms-sim process.
local function kms_inputs(ctx, h)
  local compose, err = fs.read(h.workdir .. "/kms.toml")
  if not compose then return nil, "cannot read the kms.toml of " .. h.name .. ": " .. tostring(err) end
  local spec = h.spec
  return {
    image = spec.image or ctx.vars.sim_image, compose = compose, salt = crypto.unhex(h.sim_salt),
    device = spec.device and M.ppid(spec.device) or nil, tcb_status = spec.tcb_status, advisory_ids = spec.advisories,
  }
end

-- An app(...) is one instance for the whole run: its salt is drawn once.
local function app_inputs(ctx, a)
  local spec = a.spec
  a.sim_salt = a.sim_salt or crypto.random(16)
  return {
    image = spec.image or ctx.vars.sim_image, compose = spec.compose or a.name, salt = a.sim_salt,
    device = spec.device and M.ppid(spec.device) or nil, tcb_status = spec.tcb_status, advisory_ids = spec.advisories,
  }
end

--- The attester of a kms handle or app (emu/kms/ratls.lua) | nil, error.
function M.attester(ctx, of)
  if of.__kind == "kms" and of.spec.attestation == false then
    return nil, of.name .. " has no attestation source (attestation = false): nothing can attest it"
  end
  local inputs, err
  if of.__kind == "kms" then inputs, err = kms_inputs(ctx, of) else inputs, err = app_inputs(ctx, of) end
  if not inputs then return nil, err end
  local a = ratls.attester(inputs)
  -- A captured attestation must be the one derived here: a drift would make the
  -- emulator reject every client, a confusing failure.
  if of.__kind == "kms" and of.attestation and of.attestation.mr_aggregated
    and of.attestation.mr_aggregated:gsub("^0x", "") ~= a.summary.mr_aggregated then
    return nil, string.format("the identity derived for %s (mr_aggregated %s) is not the one it attests (%s)",
      of.name, a.summary.mr_aggregated, of.attestation.mr_aggregated)
  end
  return a
end

return M
