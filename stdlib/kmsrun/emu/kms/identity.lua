-- The emulated instance's identity: what a TDX quote plus event log would attest for a KMS
-- CVM, derived from the emulator's inputs (image name, compose bytes, per-deployment salt,
-- device id). Nothing here is measured; every value is a hash of labelled inputs, so the
-- same inputs always give the same identity and a new salt gives a new instance.
-- docs/emulator.md spells out the derivation.
local crypto = require "kmsrun.crypto"
local hex = require "kmsrun.lib.hex"

local M = {}

M.TEE_VARIANT = "dstack-tdx"
M.DEFAULT_IMAGE = "dstack-0.5.7"
M.DEFAULT_DEVICE = "kmsrun-sim-default-device"

local ZERO48 = string.rep("\0", 48)

-- Runtime events in the order the guest records them; boot-mr-done splits the
-- boot-time measurement (SignCert) from the full one (everything else).
function M.events(id)
  return {
    { "app-id", id.app_id },
    { "compose-hash", id.compose_hash },
    { "instance-id", id.instance_id },
    { "boot-mr-done", "" },
    { "key-provider", id.key_provider_info },
    { "system-ready", "" },
  }
end

--- RTMR3 replay over events (all, or up to boot-mr-done when boottime).
function M.rtmr3(events, boottime)
  local r = ZERO48
  for _, ev in ipairs(events) do
    if boottime and ev[1] == "boot-mr-done" then break end
    r = crypto.sha384(r .. crypto.sha384(ev[1] .. ":" .. ev[2]))
  end
  return r
end

local function payload(events, name)
  for _, ev in ipairs(events) do if ev[1] == name then return ev[2] end end
  return ""
end

--- Derives the measured values from registers + events (what a verifier would compute).
-- regs = { mrtd, rtmr0, rtmr1, rtmr2 } (raw 48 bytes each).
function M.measure(regs, events, boottime)
  local kp = boottime and "" or payload(events, "key-provider")
  local base = regs.mrtd .. regs.rtmr0 .. regs.rtmr1 .. regs.rtmr2
  return {
    mr_aggregated = crypto.sha256(base .. M.rtmr3(events, boottime)),
    mr_system = crypto.sha256(base .. (kp == "" and string.rep("\0", 32) or crypto.sha256(kp))),
    app_id = payload(events, "app-id"),
    compose_hash = payload(events, "compose-hash"),
    instance_id = payload(events, "instance-id"),
    key_provider_info = kp,
  }
end

--- The os_image_hash (raw) an instance started with image name `image` reports.
function M.os_image_hash(image)
  return crypto.sha256("kmsrun-sim:os-image:" .. image)
end

--- The raw PPID (16 bytes) of a device label; the default label is every instance's.
function M.device_ppid(label)
  return crypto.sha256("kmsrun-sim:device:" .. (label or M.DEFAULT_DEVICE)):sub(1, 16)
end

--- Builds an identity from inputs: { image = name, compose = bytes, salt = bytes, device = bytes,
-- tcb_status = string (default "UpToDate"), advisory_ids = {strings}, app_id = bytes }.
function M.derive(inputs)
  local image = inputs.image or M.DEFAULT_IMAGE
  local compose = inputs.compose or ""
  local salt = assert(inputs.salt, "identity.derive: salt is required")
  local device = inputs.device or M.device_ppid()
  local id = {
    image = image,
    os_image_hash = M.os_image_hash(image),
    regs = {
      mrtd = crypto.sha384("kmsrun-sim:mrtd:" .. image),
      rtmr0 = crypto.sha384("kmsrun-sim:rtmr0:" .. image),
      rtmr1 = crypto.sha384("kmsrun-sim:rtmr1:" .. image),
      rtmr2 = crypto.sha384("kmsrun-sim:rtmr2:" .. image),
    },
    compose_hash = crypto.sha256(compose),
    instance_id = crypto.sha256("kmsrun-sim:instance-id:" .. salt):sub(1, 20),
    ppid = device,
    device_id = crypto.sha256(device),
    tcb_status = inputs.tcb_status or "UpToDate",
    advisory_ids = inputs.advisory_ids or {},
    tee_variant = M.TEE_VARIANT,
  }
  id.app_id = inputs.app_id or id.compose_hash:sub(1, 20)
  -- The key-provider event: the emulated equivalent of a local (SGX) key provider's record.
  id.key_provider_info = string.format('{"name":"kmsrun-sim","id":"%s"}',
    hex.encode(crypto.sha256("kmsrun-sim:key-provider:" .. image)))
  id.events = M.events(id)
  local full = M.measure(id.regs, id.events, false)
  id.mr_aggregated, id.mr_system = full.mr_aggregated, full.mr_system
  id.vm_config = string.format('{"os_image_hash":"%s","cpu_count":2,"memory_size":2147483648,"image":"%s"}',
    hex.encode(id.os_image_hash), image:gsub('[%c"\\]', ""))
  return id
end

--- The identity as hex strings (for logs, tests and GetAttestationInfo-like views).
function M.summary(id)
  return {
    image = id.image, os_image_hash = hex.encode(id.os_image_hash), mr_aggregated = hex.encode(id.mr_aggregated),
    mr_system = hex.encode(id.mr_system), app_id = hex.encode(id.app_id), compose_hash = hex.encode(id.compose_hash),
    instance_id = hex.encode(id.instance_id), device_id = hex.encode(id.device_id), ppid = hex.encode(id.ppid),
    tcb_status = id.tcb_status, tee_variant = id.tee_variant, advisory_ids = id.advisory_ids,
  }
end

return M
