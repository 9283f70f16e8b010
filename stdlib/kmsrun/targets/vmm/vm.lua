-- The life of one KMS CVM on a dstack-vmm: create it, follow its boot through
-- GetInfo (boot_progress, boot_error, status), fetch its logs, remove it.
-- Readiness of the KMS itself is not decided here: "done" only means the
-- containers were started (gotcha 6); wait_ready probes the real endpoint.
local time = require "kmsrun.time"

local M = {}

--- Finds a VM by name (after a CreateVm whose answer was lost). Returns id or nil.
function M.find_by_name(c, name)
  local res = c:call("Status", { brief = true })
  if type(res) ~= "table" or type(res.vms) ~= "table" then return nil end
  for _, vm in ipairs(res.vms) do
    if vm.name == name then return vm.id end
  end
  return nil
end

--- GetInfo: the VmInfo table, false when the VMM does not know the id, or nil, err.
function M.info(c, id)
  local res, err, code = c:call("GetInfo", { id = id })
  if not res then return nil, err, code end
  if type(res) ~= "table" or not res.found or type(res.info) ~= "table" then return false end
  return res.info
end

local DEAD = { exited = true, stopped = true, stopping = true, removing = true }

--- Polls GetInfo until boot_progress is "done". on_progress(info, elapsed) is
-- called at every change of (status, boot_progress). Returns info or nil, err.
function M.follow_boot(c, id, opts)
  local started = time.now()
  local deadline = started + opts.timeout
  local interval = opts.interval or 0.2
  local last
  while true do
    local info, err = M.info(c, id)
    if info == false then return nil, "the VMM no longer knows the VM (was it removed?)" end
    if info then
      local key = tostring(info.status) .. "|" .. tostring(info.boot_progress)
      if key ~= last then
        last = key
        if opts.on_progress then opts.on_progress(info, time.now() - started) end
      end
      if info.boot_error and info.boot_error ~= "" then
        return nil, string.format("boot failed: %s (boot progress: %s)", info.boot_error, tostring(info.boot_progress)), info
      end
      if DEAD[info.status] then
        return nil, string.format("the VM is %s (boot progress: %s, exited at: %s)", info.status,
          tostring(info.boot_progress), tostring(info.exited_at)), info
      end
      if info.boot_progress == "done" or info.boot_progress == "running" then return info end
    elseif opts.on_error then
      opts.on_error(err)
    end
    if time.now() >= deadline then
      return nil, string.format("boot did not reach 'done' within %g s (last: %s)", opts.timeout,
        info and string.format("status %s, boot progress %s", tostring(info.status), tostring(info.boot_progress)) or tostring(err)), info
    end
    time.sleep(math.min(interval, math.max(0.01, deadline - time.now())))
    interval = math.min(interval * 1.5, opts.max_interval or 5)
  end
end

--- Removes a VM and waits (up to opts.timeout) until the VMM forgets it.
-- An id the VMM does not know counts as removed. Returns true or nil, err.
function M.remove(c, id, opts)
  opts = opts or {}
  local ok, err = c:call("RemoveVm", { id = id })
  if not ok then
    if tostring(err):find("VM not found", 1, true) then return true end
    return nil, err
  end
  local deadline = time.now() + (opts.timeout or 10)
  while time.now() < deadline do
    local info = M.info(c, id)
    if info == false then return true end
    time.sleep(0.05)
  end
  -- Removal continues in the background on a real VMM (status "removing").
  return true, "still listed as removing"
end

return M
