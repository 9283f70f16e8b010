-- What a KMS CVM leaves in the evidence: vm/<kms>.json (the VM's record) and,
-- when something failed, logs/<kms>.log (the KMS container's log, read from
-- the guest agent) and logs/<kms>.serial.log (the VMM's serial console log).
local json = require "kmsrun.lib.json"
local guest_agent = require "kmsrun.targets.vmm.guest_agent"
local tail = require("kmsrun.targets.registry").tail
local session = require("kmsrun.targets.vmm.session").current

local M = {}

M.CONTAINER = "kms"

function M.record(ctx, h)
  local v = h.vm
  ctx.evidence:json("vm/" .. h.name .. ".json", {
    kms = h.name, vm_name = v.name, vm_id = v.id, vmm = v.vmm, os_image = v.os_image, kms_image = v.kms_image,
    compose_hash = v.compose_hash, app_id = v.app_id, vmm_compose_hash = v.vmm_compose_hash,
    guest_agent = v.guest_agent, host_port = v.host_port, guest_agent_port = v.agent_port,
    ports = v.ports and json.array(v.ports) or nil, key_provider = v.key_provider,
    vmm_version = v.vmm_version, vmm_networking = v.vmm_networking,
    onboard_url = h.onboard_url, runtime_url = h.runtime_url, guest = h.guest,
    boot = json.array(v.boot), boot_error = v.boot_error, status = v.status, no_boot_progress = v.no_progress,
    removed = v.removed or false, kept = v.kept or false, remove_note = v.remove_note, error = v.error,
  })
end

--- The container log through the guest agent, or nil, err (no forward, not up yet...).
function M.container_log(ctx, h, lines)
  local v = h.vm
  if not (v and v.agent_url) then return nil, "the guest-agent port is not forwarded (vmm_guest_agent=false)" end
  return guest_agent.logs(v.agent_url, M.CONTAINER, { lines = lines or tonumber(ctx.vars.vmm_log_lines) or 2000 })
end

--- Fetches both logs into the evidence (while the VM exists); returns the text
-- to show: the container log when there is one, else the serial log.
function M.fetch_logs(ctx, h)
  local v, s = h.vm, session(ctx)
  if not (v and v.id and s) or v.removed then return h.log_text end
  local lines = tonumber(ctx.vars.vmm_log_lines) or 2000
  local serial, err = s.client:logs(v.id, { lines = lines })
  if not serial then serial = "[kmsrun: could not fetch the VM's serial log: " .. tostring(err) .. "]\n" end
  ctx.evidence:write("logs/" .. h.name .. ".serial.log", serial)
  local text, cerr = M.container_log(ctx, h, lines)
  if not text or text == "" then
    text = string.format("[kmsrun: no KMS container log (%s); the VM's serial log follows]\n%s",
      tostring(cerr or "the container printed nothing yet"), serial)
  end
  h.log_text = text
  h.log_path = ctx.evidence:write("logs/" .. h.name .. ".log", text)
  return text
end

function M.tail(text, n)
  return tail(text, n)
end

return M
