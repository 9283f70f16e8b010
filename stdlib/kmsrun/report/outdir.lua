-- Claiming a run's output directory. The run owns it: it is created now (0700),
-- or adopted only when empty, or when it is a finished kmsrun output with
-- nothing left to undo (then emptied first, so two runs never mix their
-- transcripts, ledgers and archives). A directory that is a symbolic link,
-- belongs to another user or holds anything else is refused. A lock (held as
-- long as the process lives, whatever ends it) keeps a second run, and
-- `kmsrun cleanup`, out while the run is alive.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local procinfo = require "kmsrun.lib.procinfo"

local M = {}

--- The lock and marker file: it says the directory is a kmsrun output and which
-- process holds it (pid and start time only: a command line can hold secrets).
M.LOCK = ".kmsrun-run"

-- Registrations with an undo record and no "undone" line after them.
local function pending_undo(dir)
  local text = fs.read("ledger.ndjson", { beneath = dir })
  if not text then return 0 end
  local open = {}
  local n = 0
  for line in text:gmatch("[^\n]+") do
    local e = json.decode(line)
    if type(e) == "table" and e.action == "register" and type(e.undo) == "table" then
      open[tostring(e.id)] = true
    elseif type(e) == "table" and e.action == "undone" then
      open[tostring(e.id)] = nil
    end
  end
  for _ in pairs(open) do n = n + 1 end
  return n
end

local function lock(dir)
  local me = procinfo.stat("self") or {}
  local ok, err, code = fs.lock(dir .. "/" .. M.LOCK, json.encode({ pid = me.pid, starttime = me.starttime }) .. "\n")
  if ok then return true end
  if code == "EBUSY" then
    local holder = json.decode(fs.read(M.LOCK, { beneath = dir }) or "") or {}
    return nil, string.format("%s is in use by another kmsrun run (pid %s): give another --out", dir, tostring(holder.pid))
  end
  -- The lock is the first file the run writes: a read-only or full directory is
  -- said here, with its cause, not as the failures of everything written later.
  return nil, "cannot write in " .. dir .. ": " .. tostring(err)
end

--- Claims dir for a run; returns true, or nil and a message saying why not.
function M.claim(dir)
  local st = fs.stat(dir, { nofollow = true })
  if not st then
    local parent = dir:match("^(.*)/[^/]+/*$")
    if parent == "" then parent = "/" end
    if parent then
      local ok, err = fs.mkdir(parent, { mode = 448 })
      if not ok then return nil, err end
    end
    -- mkdir of the last component only: if it appeared meanwhile, the checks below run.
    local ok, err, code = fs.mkdir(dir:match("([^/]+)/*$"), { mode = 448, beneath = parent or "." })
    if not ok and code ~= "EEXIST" then return nil, err end
    st = fs.stat(dir, { nofollow = true })
    if not st then return nil, "cannot create " .. dir end
  end
  if st.kind == "link" then return nil, dir .. " is a symbolic link; give the directory itself" end
  if st.kind ~= "directory" then return nil, dir .. " exists and is not a directory" end
  if st.uid ~= st.my_uid then return nil, string.format("%s belongs to another user (uid %d)", dir, st.uid) end
  -- The lock file marks a kmsrun output (its lock may be from a run long gone):
  -- whether it was there before this run's lock creates it.
  local lst = fs.stat(dir .. "/" .. M.LOCK, { nofollow = true })
  local is_output = lst ~= nil and lst.kind == "file"
  local ok, lerr = lock(dir)
  if not ok then return nil, lerr end
  local names, nerr = fs.list(dir)
  if not names then return nil, nerr end
  local others = {}
  for _, n in ipairs(names) do if n ~= M.LOCK then others[#others + 1] = n end end
  if #others > 0 then
    if not is_output then
      fs.remove(dir .. "/" .. M.LOCK) -- made just now: it must not mark the directory as ours
      return nil, string.format("%s is not empty (%d entries, e.g. '%s') and is not a kmsrun output: give a new "
        .. "or an empty directory as --out", dir, #others, others[1])
    end
    local pending = pending_undo(dir)
    if pending > 0 then
      return nil, string.format("%s holds a run that did not clean up (%d action(s) left in its ledger): run "
        .. "`kmsrun cleanup %s` first, or give another --out", dir, pending, dir)
    end
    -- A finished kmsrun output: start it afresh.
    for _, n in ipairs(others) do
      local rok, rerr = fs.remove(dir .. "/" .. n)
      if not rok then return nil, rerr end
    end
  end
  fs.chmod(dir, 448)
  return true
end

return M
