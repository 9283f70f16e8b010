-- Undoing one ledger entry for `kmsrun cleanup` (cli/commands/cleanup.lua), after
-- cli/cleanup/trust.lua has checked it. Each returns true, message or nil, error.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local trust = require "kmsrun.cli.cleanup.trust"

-- Processes --------------------------------------------------------------------------

--- What /proc says about pid: nil when it does not exist, else {state =, pgrp =}.
-- Without /proc, {state = "?"} when kill(pid, 0) says it exists.
local function proc_info(pid)
  local st = trust.proc_stat(pid)
  if not st then
    if fs.exists("/proc/self/stat") then return nil end
    return proc.alive(pid) and { state = "?" } or nil
  end
  return st
end

-- A zombie has exited: it only waits for a parent (or an init that reaps) to collect it.
local function gone(pid)
  local info = proc_info(pid)
  return info == nil or info.state == "Z" or info.state == "X"
end

-- Signals pid's process group (the run spawns every child as a group leader), else pid.
-- Uses the shell's kill builtin: the host has no primitive for pids it did not spawn.
local function signal(pid, sig, group)
  local targets = group and { "-" .. pid, tostring(pid) } or { tostring(pid) }
  for _, target in ipairs(targets) do
    local p = proc.spawn({ "/bin/sh", "-c", 'kill -s "$1" -- "$2" 2>/dev/null', "kmsrun-cleanup", sig, target })
    if p then
      local code = p:wait(10)
      if code == 0 then return true end
    end
  end
  return false
end

local function wait_gone(pid, seconds)
  local deadline = time.now() + seconds
  while not gone(pid) do
    if time.now() >= deadline then return false end
    time.sleep(0.05)
  end
  return true
end

local function undo_process(u, _, opts)
  local ok, why, gone_already = trust.check_process(u, opts.run)
  if not ok then
    if gone_already then return true, why end
    return nil, why
  end
  local pid = math.tointeger(tonumber(u.pid))
  local info = proc_info(pid)
  if opts.dry_run then return true, string.format("would stop process %d", pid) end
  local group = info.pgrp == pid
  signal(pid, "TERM", group)
  if wait_gone(pid, opts.grace) then
    return true, string.format("process %d stopped (SIGTERM to its %s)", pid, group and "process group" or "pid")
  end
  signal(pid, "KILL", group)
  if wait_gone(pid, 5) then
    return true, string.format("process %d killed (no exit %g s after SIGTERM; SIGKILL to its %s)", pid, opts.grace,
      group and "process group" or "pid")
  end
  return nil, string.format("process %d is still alive after SIGTERM and SIGKILL", pid)
end

-- Directories and files ---------------------------------------------------------------

local function undo_dir(u, _, opts)
  local path, err = trust.check_work_dir(u.path, opts.out_abs)
  if not path then return nil, err end
  if not fs.exists(path) then return true, "directory " .. path .. " already gone" end
  if opts.dry_run then return true, "would remove directory " .. path end
  local ok, rerr = fs.remove(path)
  if not ok then return nil, string.format("cannot remove %s: %s", path, tostring(rerr)) end
  if fs.exists(path) then return nil, "directory " .. path .. " is still there after removing it" end
  return true, "removed directory " .. path
end

local function undo_file(u, _, opts)
  if opts.policy_files == nil then opts.policy_files, opts.policy_why = trust.policy_files(opts.run) end
  local path, st = trust.check_file(u.path, opts.policy_files or nil, opts.policy_why)
  if not path then return nil, st end
  if u.content == nil or u.content == json.null then
    if u.absent ~= true then return nil, "no original content recorded for " .. path end
    if opts.dry_run then return true, "would remove " .. path .. " (it did not exist before the run)" end
    local ok, rerr = fs.remove(path)
    if not ok then return nil, string.format("cannot remove %s: %s", path, tostring(rerr)) end
    return true, "removed " .. path .. " (it did not exist before the run)"
  end
  if type(u.content) ~= "string" then return nil, "the recorded content of " .. path .. " is not a string" end
  if fs.read(path) == u.content then return true, "file " .. path .. " already holds its original content" end
  if opts.dry_run then return true, "would restore " .. path end
  -- The file's own permissions (never the ledger's: no mode, no setuid bit from there).
  local ok, werr = fs.write(path, u.content, { mode = st and (st.mode & 511) or 420 })
  if not ok then return nil, string.format("cannot restore %s: %s", path, tostring(werr)) end
  return true, string.format("restored %s (%d bytes)", path, #u.content)
end

-- VMs -----------------------------------------------------------------------------------

local function vmm_credentials()
  local function env(n) local v = os.getenv(n) return v ~= "" and v or nil end
  return { token = env("DSTACK_VMM_TOKEN"), user = env("DSTACK_VMM_AUTH_USER"), password = env("DSTACK_VMM_AUTH_PASSWORD") }
end

local function undo_vm(u, _, opts)
  if type(u.url) ~= "string" or u.url == "" then return nil, "the ledger records no VMM url" end
  local why = trust.check_vm(u, opts.vmm_url)
  if why then return nil, why end
  local okc, client = pcall(require, "kmsrun.targets.vmm.client")
  if not okc then return nil, "the VMM client is not available: " .. tostring(client) end
  local c, cerr = client.new(u.url, vmm_credentials(), { timeout = 30 })
  if not c then return nil, cerr end
  local vm = require "kmsrun.targets.vmm.vm"
  local id = u.id
  if (id == nil or id == json.null) and type(u.name) == "string" then
    -- CreateVm was sent but its answer was not recorded: the VM has a unique name.
    id = vm.find_by_name(c, u.name)
    if not id then return true, string.format("no VM named %s on %s (never created, or already removed)", u.name, u.url) end
  end
  if type(id) ~= "string" or id == "" then return nil, "the ledger records neither a VM id nor a name" end
  local label = string.format("VM %s%s on %s", id, type(u.name) == "string" and (" (" .. u.name .. ")") or "", u.url)
  if opts.dry_run then return true, "would remove " .. label end
  local ok, err = vm.remove(c, id, { timeout = 30 })
  if not ok then return nil, string.format("cannot remove %s: %s", label, tostring(err)) end
  return true, "removed " .. label .. (err and (" (" .. err .. ")") or "")
end

return { process = undo_process, dir = undo_dir, file = undo_file, vm = undo_vm }
