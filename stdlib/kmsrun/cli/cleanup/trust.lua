-- What `kmsrun cleanup` believes of a ledger. The ledger is data written by a
-- run, and anything that can write a file can write one: every entry is checked
-- against the world before it is undone, and what cleanup acts with (the VMM,
-- its credentials) comes from cleanup's own command line and environment.
--   directory  this user's, 0700, not a link, not held by a live run (its lock)
--   process    still the process the run started: same start time (/proc/PID/stat
--              field 22) and command line (SHA-256 of /proc/PID/cmdline) as recorded
--              when the run spawned it, this user's, and a child of the run that
--              wrote the ledger (the "run" line)
--   dir        inside the output directory, or a kmsrun-* directory directly in
--              the temp directory of this environment ($TMPDIR or /tmp); this user's
--   file       one of the external policy files (config_path) the run's runbook
--              names, read from the runbook itself (whose SHA-256 must match)
--   vm         on the VMM given to cleanup (--vmm-url or DSTACK_VMM_URL) only
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"

local M = {}

local procinfo = require "kmsrun.lib.procinfo"

local function sha256_hex(s) return crypto.hex(crypto.sha256(s)) end

M.proc_stat = procinfo.stat

--- nil if dir may be cleaned up by this user, else why not.
function M.check_dir(dir)
  local st = fs.stat(dir, { nofollow = true })
  if not st then return dir .. " does not exist" end
  if st.kind == "link" then return dir .. " is a symbolic link; give the output directory itself" end
  if st.kind ~= "directory" then return dir .. " is not a directory" end
  if st.uid ~= st.my_uid then return string.format("%s belongs to another user (uid %d): not this user's run", dir, st.uid) end
  if st.mode ~= 448 then
    return string.format("%s has mode %04o, not 0700: a run's output directory is owner-only; not trusting its ledger",
      dir, st.mode)
  end
  return nil
end

--- Checks a process entry: true (act on it), or false and why not, plus
-- `gone` when there is nothing to do.
function M.check_process(u, run)
  local pid = math.tointeger(tonumber(u.pid))
  if not pid or pid <= 1 then return false, "the ledger records no usable pid (" .. tostring(u.pid) .. ")" end
  local now = M.proc_stat(pid)
  if not now or now.state == "Z" or now.state == "X" then return false, string.format("process %d already gone", pid), true end
  if type(u.starttime) ~= "number" or type(u.cmdline_sha256) ~= "string" then
    return false, string.format("the ledger records no start time and command line for pid %d: cannot tell it is "
      .. "the run's process; left alone", pid)
  end
  if now.starttime ~= u.starttime then
    return false, string.format("process %d already gone (pid %d now belongs to a process started at another time; "
      .. "left alone)", pid, pid), true
  end
  local cmdline = fs.read("/proc/" .. pid .. "/cmdline") or ""
  if sha256_hex(cmdline) ~= u.cmdline_sha256 then
    return false, string.format("process %d does not run the command line the run started; left alone", pid)
  end
  local owner = fs.stat("/proc/" .. pid)
  if not owner or owner.uid ~= owner.my_uid then return false, string.format("process %d is another user's; left alone", pid) end
  if not run or type(run.pid) ~= "number" or u.ppid ~= run.pid then
    return false, string.format("process %d is not recorded as a child of the run that wrote the ledger; left alone", pid)
  end
  return true
end

--- The temp directory of this environment (where fs.tmpdir creates).
function M.tmp_base()
  local t = os.getenv("TMPDIR")
  return ((t and t ~= "") and t or "/tmp"):gsub("(.)/+$", "%1")
end

local function clean_abs(p)
  if type(p) ~= "string" or p:sub(1, 1) ~= "/" then return nil, "not an absolute path: " .. tostring(p) end
  for part in p:gmatch("[^/]+") do
    if part == ".." or part == "." then return nil, "refusing a path with '" .. part .. "': " .. p end
  end
  return (p:gsub("/+", "/"):gsub("(.)/$", "%1"))
end

--- Checks a directory entry: the clean path, or nil and why not.
function M.check_work_dir(path, out_abs)
  local p, err = clean_abs(path)
  if not p then return nil, err end
  if p == "/" then return nil, "refusing to remove /" end
  local inside_out = out_abs and p:sub(1, #out_abs + 1) == out_abs .. "/"
  local base = M.tmp_base()
  local name = p:sub(#base + 2)
  local in_tmp = p:sub(1, #base + 1) == base .. "/" and name:match("^kmsrun%-[^/]+$") ~= nil
  if not inside_out and not in_tmp then
    return nil, string.format("%s is neither inside the output directory nor a kmsrun-* directory in %s (this "
      .. "environment's TMPDIR); left alone", p, base)
  end
  local st = fs.stat(p, { nofollow = true })
  if st and st.kind == "link" then return nil, p .. " is a symbolic link; left alone" end
  if st and st.uid ~= st.my_uid then return nil, p .. " is another user's; left alone" end
  return p
end

--- Checks a file entry against the policy files the runbook names.
-- allowed: set of absolute paths (from M.policy_files), or nil and why.
function M.check_file(path, allowed, why)
  local p, err = clean_abs(path)
  if not p then return nil, err end
  if not allowed then return nil, "cannot check " .. p .. ": " .. tostring(why) end
  if not allowed[p] then return nil, p .. " is not a policy file the runbook names; left alone" end
  local st = fs.stat(p, { nofollow = true })
  if st and st.kind == "link" then return nil, p .. " is a symbolic link; left alone" end
  if st and st.kind ~= "file" then return nil, p .. " is not a regular file; left alone" end
  return p, st
end

--- The external policy files (auth_server{config_path}) of the run's runbook, as
-- a set of absolute paths, or nil and why. The runbook is loaded (declarations
-- only, in the runbook environment) from the path the run recorded, only if it
-- still hashes to what the run recorded and does not ask for host access.
function M.policy_files(run)
  if not run or type(run.runbook) ~= "string" then return nil, "the ledger does not name the run's runbook" end
  local text = fs.read(run.runbook)
  if not text then return nil, "the run's runbook " .. run.runbook .. " cannot be read" end
  if sha256_hex(text) ~= run.runbook_sha256 then return nil, "the run's runbook " .. run.runbook .. " changed since the run" end
  local spec, err = require("kmsrun.run.runbook").load(run.runbook, { for_cleanup = true })
  if not spec then return nil, "cannot load the run's runbook: " .. tostring(err) end
  if spec.header.host_access then return nil, "the run's runbook asks for host access: not loaded by cleanup" end
  local set = {}
  for _, auth in ipairs(spec.auths or {}) do
    local p = auth.spec and auth.spec.config_path
    if type(p) == "string" then
      if p:sub(1, 1) ~= "/" and type(run.cwd) == "string" then p = run.cwd .. "/" .. p end
      local c = clean_abs(p)
      if c then set[c] = true end
    end
  end
  return set
end

--- nil if a VM entry may be removed through the VMM given to cleanup, else why not.
function M.check_vm(u, vmm_url)
  if not vmm_url then
    return "the VMM to remove it from is not given: pass --vmm-url URL (or DSTACK_VMM_URL); the ledger's URL "
      .. tostring(u.url) .. " is not used on its own"
  end
  local function norm(s) return (tostring(s):gsub("/+$", "")) end
  if norm(u.url) ~= norm(vmm_url) then
    return string.format("recorded on VMM %s, not on %s (the one given to cleanup); left alone", tostring(u.url), vmm_url)
  end
  return nil
end

return M
