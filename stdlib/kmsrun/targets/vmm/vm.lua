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
      -- Images without progress reporting show "N/A" for good (dstack/vmm/src/app.rs:424
      -- on main): nothing to wait for here; wait_ready probes the KMS instead.
      if info.boot_progress == "N/A" and info.status == "running" then
        info.no_progress = true
        return info
      end
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

local function not_found(err)
  return tostring(err):find("VM not found", 1, true) ~= nil
end

-- Polls GetInfo until pred(info) (info == false: the VMM forgot the VM) or the deadline.
local function wait_until(c, id, deadline, pred)
  local info
  repeat
    info = M.info(c, id)
    if info ~= nil and pred(info) then return true, info end
    time.sleep(0.1)
  until time.now() >= deadline
  return false, info
end

--- Stops, then removes a VM and waits (up to opts.timeout, default 60 s) until
-- the VMM forgets it. StopVm first because VMMs up to v0.5.6 refuse to remove a
-- running VM ("VM is running, stop it first", vmm/src/app.rs:282 at v0.5.6);
-- later ones stop it themselves, so the StopVm costs nothing there. Removal
-- then runs in the background (status "removing", dstack/vmm/src/app/vm_info.rs:236
-- on main) and a second RemoveVm of a VM being removed is a no-op
-- (dstack/vmm/src/app.rs:651). An id the VMM does not know counts as removed.
-- Returns true[, note] or nil, err.
function M.remove(c, id, opts)
  opts = opts or {}
  local deadline = time.now() + (opts.timeout or 60)
  local ok, err = c:call("StopVm", { id = id })
  if not ok and not_found(err) then return true, "the VMM did not know the VM (already removed)" end
  if ok then
    -- StopVm returns once the supervisor was told; wait until the VM is no longer running.
    wait_until(c, id, deadline, function(i) return i == false or i.status ~= "running" end)
  end
  while true do
    ok, err = c:call("RemoveVm", { id = id })
    if ok or not_found(err) then break end
    if not tostring(err):find("stop it first", 1, true) or time.now() >= deadline then return nil, err end
    c:call("StopVm", { id = id })
    time.sleep(0.2)
  end
  local gone, info = wait_until(c, id, deadline, function(i) return i == false end)
  if gone then return true end
  return nil, string.format("the VMM still lists the VM after %g s (status %s)", opts.timeout or 60,
    type(info) == "table" and tostring(info.status) or "unknown")
end

return M
