-- Auth policies (auth-simple's config format) built from the attestation
-- captured in THIS run — never from values pasted in, since mr_aggregated
-- changes on every redeploy.
local json = require "kmsrun.lib.json"

local M = {}

local ZERO_MR = "0x" .. string.rep("0", 64)

local function hex0x(h)
  return "0x" .. tostring(h):lower():gsub("^0x", "")
end

local function attestation_of(h, who)
  if not h.attestation then
    error(string.format("%s: the attestation of %s has not been captured yet (call capture_attestation(%s) first)",
      who, h.name, h.name), 0)
  end
  return h.attestation
end

local function unique(list)
  local seen, out = {}, json.array()
  for _, v in ipairs(list) do
    if not seen[v] then seen[v] = true; out[#out + 1] = v end
  end
  return out
end

local function policy(description, config)
  return { __kind = "policy", description = description, config = config }
end

local function base(os_images, mrs)
  return json.ordered({
    "osImages", unique(os_images),
    "gatewayAppId", "any",
    "kms", json.ordered({ "mrAggregated", unique(mrs), "devices", json.array(), "allowAnyDevice", true }),
    "apps", json.ordered({}),
  })
end

local function names(handles)
  local n = {}
  for _, h in ipairs(handles) do n[#n + 1] = h.name end
  return table.concat(n, ", ")
end

--- The guide's deny baseline: no OS image, kms.mrAggregated = [] (denies every KMS).
function M.deny_all()
  return policy("deny_all()", base({}, {}))
end

--- Allows exactly the given KMS instances (their observed OS image and aggregated MR).
function M.allow(...)
  local hs = { ... }
  local os, mrs = {}, {}
  for _, h in ipairs(hs) do
    local a = attestation_of(h, "allow")
    os[#os + 1] = hex0x(a.os_image_hash)
    -- Set by capture_attestation when GetAttestationInfo reported another OS image than
    -- the quote attests (the simulator's split vm_config; os_image_hash is then the
    -- attested one, which the self-check and the receiver check judge by).
    if a.reported_os_image_hash then os[#os + 1] = hex0x(a.reported_os_image_hash) end
    mrs[#mrs + 1] = hex0x(a.mr_aggregated)
  end
  return policy("allow(" .. names(hs) .. ")", base(os, mrs))
end

--- Allows the observed OS images but no aggregated MR: the denial reason is
-- "aggregated MR not allowed" (not "OS image is not allowed").
function M.deny_by_mr(...)
  local hs = { ... }
  local os = {}
  for _, h in ipairs(hs) do
    local a = attestation_of(h, "deny_by_mr")
    os[#os + 1] = hex0x(a.os_image_hash)
    if a.reported_os_image_hash then os[#os + 1] = hex0x(a.reported_os_image_hash) end
  end
  return policy("deny_by_mr(" .. names(hs) .. ")", base(os, { ZERO_MR }))
end

--- Wraps a free-form auth-simple config table.
function M.custom(config, description)
  return policy(description or "custom policy", config)
end

return M
