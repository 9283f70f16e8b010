-- `kmsrun cleanup OUTDIR`: undoes what a run left behind when it could not clean
-- up itself (SIGKILL, a crash, a power cut), from the cleanup ledger
-- OUTDIR/ledger.ndjson that the run appends (and fsyncs) as it goes.
--
-- Every registered action not yet marked "undone" is undone, last in first out:
--   process  SIGTERM to its process group, a grace period, then SIGKILL
--            (already gone is fine; a pid now owned by a younger process is left alone)
--   dir      removed
--   vm       StopVm then RemoveVm (targets/vmm/vm.lua: every release, waiting through
--            "removing") through the VMM's prpc API at the recorded url, found by its
--            recorded id or unique name; credentials come
--            from DSTACK_VMM_TOKEN or DSTACK_VMM_AUTH_USER + DSTACK_VMM_AUTH_PASSWORD,
--            never from the ledger
--   file     its recorded content restored (removed when recorded as absent)
-- Each outcome is appended to the ledger as an "undone" or "undo_failed" line, so a
-- second cleanup only retries what failed. Registrations without an undo record
-- (in-process servers, logical "remove X" entries whose parts are recorded on their
-- own) ended with the run's process; they are listed and left alone.
-- Exit codes: 0 everything undone, 5 something could not be undone, 2 usage.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local exit_codes = require "kmsrun.run.exit_codes"

local USAGE = [[
usage: kmsrun cleanup [--grace SECONDS] [--dry-run] OUTDIR

Undoes, last in first out, every action a run registered in OUTDIR/ledger.ndjson and
did not undo itself (the run was killed): stops its processes (SIGTERM to the process
group, SIGKILL after the grace period, default 5 s), removes its work directories,
removes its VMs (VMM credentials from DSTACK_VMM_TOKEN, or DSTACK_VMM_AUTH_USER and
DSTACK_VMM_AUTH_PASSWORD) and restores the files it changed. Outcomes are appended
to the ledger; running it again only retries what failed.

exit codes: 0 nothing left to undo, 5 something could not be undone, 2 usage error
]]

local out = io.stdout

local function say(fmt, ...)
  out:write(string.format(fmt, ...), "\n")
  out:flush()
end

-- Processes --------------------------------------------------------------------------

local function read_btime()
  local stat = fs.read("/proc/stat")
  return stat and tonumber(stat:match("\nbtime (%d+)") or stat:match("^btime (%d+)"))
end

--- What /proc says about pid: nil when it does not exist, else {state =, pgrp =, start_wall =}.
-- Without /proc, {state = "?"} when kill(pid, 0) says it exists.
local function proc_info(pid)
  local stat = fs.read("/proc/" .. pid .. "/stat")
  if not stat then
    if fs.exists("/proc/self/stat") then return nil end
    return proc.alive(pid) and { state = "?" } or nil
  end
  -- "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
  local rest = stat:match("^.*%) (.*)$")
  if not rest then return { state = "?" } end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  local info = { state = f[1], pgrp = tonumber(f[3]) }
  local ticks, btime = tonumber(f[20]), read_btime()
  -- /proc reports start times in USER_HZ (100 on Linux, whatever the kernel's HZ).
  if ticks and btime then info.start_wall = btime + ticks / 100 end
  return info
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

local function undo_process(u, entry, opts)
  local pid = math.tointeger(tonumber(u.pid))
  if not pid or pid <= 1 then return nil, "the ledger records no usable pid (" .. tostring(u.pid) .. ")" end
  local info = proc_info(pid)
  if info == nil or info.state == "Z" or info.state == "X" then
    return true, string.format("process %d already gone", pid)
  end
  if info.start_wall and type(entry.time) == "number" and info.start_wall > entry.time + 5 then
    return true, string.format("process %d already gone (pid %d now belongs to a process started after the run registered it; left alone)", pid, pid)
  end
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

local function safe_path(p)
  if type(p) ~= "string" or p:sub(1, 1) ~= "/" then return nil, "not an absolute path: " .. tostring(p) end
  if p:match("^/+$") then return nil, "refusing to remove /" end
  for part in p:gmatch("[^/]+") do
    if part == ".." then return nil, "refusing a path with '..': " .. p end
  end
  return p
end

local function undo_dir(u, _, opts)
  local path, err = safe_path(u.path)
  if not path then return nil, err end
  if not fs.exists(path) then return true, "directory " .. path .. " already gone" end
  if opts.dry_run then return true, "would remove directory " .. path end
  local ok, rerr = fs.remove(path)
  if not ok then return nil, string.format("cannot remove %s: %s", path, tostring(rerr)) end
  if fs.exists(path) then return nil, "directory " .. path .. " is still there after removing it" end
  return true, "removed directory " .. path
end

local function undo_file(u, _, opts)
  local path, err = safe_path(u.path)
  if not path then return nil, err end
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
  local st = fs.stat(path)
  local ok, werr = fs.write(path, u.content, { mode = math.tointeger(u.mode) or (st and st.mode) or 420 })
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

local UNDO = { process = undo_process, dir = undo_dir, file = undo_file, vm = undo_vm }

-- The ledger ------------------------------------------------------------------------------

--- Reads the ledger: the registrations in order with their state. An "undone" or
-- "undo_failed" line refers to the registration at `line` when it says so (lines
-- written here do), else to the latest registration with its id before it (a
-- reused output directory holds several runs, whose ids restart at 1).
local function read_ledger(path)
  local text, err = fs.read(path)
  if not text then return nil, err end
  local regs, latest, bad = {}, {}, {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line ~= "" then
      local e = json.decode(line)
      if type(e) == "table" then
        -- cjson decodes every number as a float; ids and line numbers are integers.
        e.id = math.tointeger(e.id) or e.id
        e.line = math.tointeger(e.line) or e.line
      end
      if type(e) ~= "table" or type(e.action) ~= "string" then
        bad[#bad + 1] = n
      elseif e.action == "register" then
        local r = { line = n, id = e.id, description = tostring(e.description or "?"), undo = e.undo, time = e.time, state = "pending" }
        regs[#regs + 1] = r
        regs["line" .. n] = r
        latest[tostring(e.id)] = r
      elseif e.action == "undone" or e.action == "undo_failed" then
        local r = (e.line and regs["line" .. tostring(e.line)]) or latest[tostring(e.id)]
        if r then r.state = e.action == "undone" and "undone" or "failed" end
      end
    end
  end
  if text ~= "" and text:sub(-1) ~= "\n" then
    -- The run was killed in the middle of a line: it cannot have been acted on.
    say("note: the ledger's last line is incomplete (the run was killed while writing it); ignored")
    bad.torn = true
  end
  return regs, bad
end

local function parse_args(args)
  local o = { grace = 5 }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then o.help = true
    elseif a == "--dry-run" or a == "-n" then o.dry_run = true
    elseif a == "--grace" then
      i = i + 1
      o.grace = tonumber(args[i])
      if not o.grace or o.grace < 0 or o.grace > 600 then return nil, "--grace expects seconds (0..600)" end
    elseif a:sub(1, 1) == "-" then return nil, "unknown option " .. a
    elseif o.dir then return nil, "one output directory at a time (got '" .. o.dir .. "' and '" .. a .. "')"
    else o.dir = a end
    i = i + 1
  end
  if not o.help and not o.dir then return nil, "give the output directory of the run to clean up" end
  return o
end

return function(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("kmsrun cleanup: ", perr, "\n", USAGE)
    return exit_codes.USAGE
  end
  if o.help then out:write(USAGE) return exit_codes.OK end
  local dir = o.dir:gsub("(.)/+$", "%1")
  local ledger = dir .. "/ledger.ndjson"
  local _, kind = fs.exists(dir)
  if kind ~= "directory" then
    io.stderr:write("kmsrun cleanup: ", dir, " is not a directory\n")
    return exit_codes.USAGE
  end
  if not fs.exists(ledger) then
    io.stderr:write("kmsrun cleanup: no cleanup ledger in ", dir, " (", ledger, " does not exist): nothing was registered there\n")
    return exit_codes.USAGE
  end
  local regs, bad = read_ledger(ledger)
  if not regs then
    io.stderr:write("kmsrun cleanup: cannot read ", ledger, ": ", tostring(bad), "\n")
    return exit_codes.USAGE
  end
  for _, n in ipairs(bad) do say("note: line %d of the ledger is not a ledger entry; ignored", n) end
  if bad.torn and not o.dry_run then
    -- End the torn line, so the lines appended below stay lines of their own.
    fs.append(ledger, "\n", { mode = 384, sync = true })
  end

  local counts = { undone = 0, failed = 0, done_before = 0, no_undo = 0, planned = 0 }
  for i = #regs, 1, -1 do
    local r = regs[i]
    if r.state == "undone" then
      counts.done_before = counts.done_before + 1
    elseif type(r.undo) ~= "table" then
      counts.no_undo = counts.no_undo + 1
      say("skip    #%s %s: no undo recorded (an in-process resource: it ended with the run)", tostring(r.id), r.description)
    else
      local fn = UNDO[r.undo.kind]
      local ok, msg
      if not fn then
        ok, msg = nil, "unknown undo kind '" .. tostring(r.undo.kind) .. "'"
      else
        local pok, a, b = pcall(fn, r.undo, r, o)
        if pok then ok, msg = a, b else ok, msg = nil, "internal error: " .. tostring(a) end
      end
      if o.dry_run then
        counts.planned = counts.planned + 1
        say("%s #%s %s: %s", ok and "plan   " or "FAILED ", tostring(r.id), r.description, tostring(msg))
      else
        local entry = { action = ok and "undone" or "undo_failed", id = r.id, line = r.line, description = r.description,
          by = "kmsrun cleanup", result = ok and msg or nil, error = (not ok) and msg or nil, time = time.wall() }
        local aok, aerr = fs.append(ledger, json.encode(entry) .. "\n", { mode = 384, sync = true })
        if not aok then io.stderr:write("kmsrun cleanup: cannot append to ", ledger, ": ", tostring(aerr), "\n") end
        if ok then counts.undone = counts.undone + 1 else counts.failed = counts.failed + 1 end
        say("%s #%s %s: %s", ok and "undone " or "FAILED ", tostring(r.id), r.description, tostring(msg))
      end
    end
  end
  if o.dry_run then
    say("kmsrun cleanup: dry run, %d action(s) examined, nothing changed", counts.planned)
    return exit_codes.OK
  end
  if counts.undone == 0 and counts.failed == 0 then
    say("kmsrun cleanup: nothing to undo in %s (%d already undone, %d without an undo record)", dir,
      counts.done_before, counts.no_undo)
  else
    say("kmsrun cleanup: %d undone, %d failed, %d already undone before, %d without an undo record",
      counts.undone, counts.failed, counts.done_before, counts.no_undo)
  end
  if counts.failed > 0 then
    io.stderr:write("kmsrun cleanup: ", counts.failed, " action(s) could not be undone; something may be left behind (run it again to retry)\n")
    return exit_codes.CLEANUP
  end
  return exit_codes.OK
end
