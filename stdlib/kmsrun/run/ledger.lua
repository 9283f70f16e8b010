-- The cleanup ledger: undo actions registered as the run creates things, run
-- last-in-first-out at its end, and appended to ledger.ndjson at once so that
-- `kmsrun cleanup OUTDIR` can undo what a killed run left.
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local events = require "kmsrun.report.events"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local procinfo = require "kmsrun.lib.procinfo"

local Run = {} -- the methods, mixed into run/runner.lua's Run
local M = { methods = Run }

--- Registers an undo action; they run last-in-first-out at the end of the run.
-- `undo` (optional) describes it for `kmsrun cleanup OUTDIR`, which undoes what a
-- killed run left: {kind = "process", pid = n}, {kind = "dir", path = p},
-- {kind = "vm", url = vmm_url, id = vm_id}, {kind = "file", path = p, content = original}.
-- The ledger is appended (and fsynced) at once, so it survives SIGKILL.
function Run:defer(description, fn, undo)
  if not self.ledger_seq then self:ledger_header() end
  if type(undo) == "table" and undo.kind == "process" and undo.pid then
    -- What `kmsrun cleanup` checks before it signals the pid: still this process.
    local id = procinfo.identity(undo.pid)
    undo.starttime, undo.cmdline_sha256, undo.ppid = id.starttime, id.cmdline_sha256, self.identity.pid
  end
  self.ledger_seq = (self.ledger_seq or 0) + 1
  local entry = { description = description, fn = fn, id = self.ledger_seq }
  self.ledger[#self.ledger + 1] = entry
  self:check_written("ledger.ndjson", self.evidence:append_json("ledger.ndjson", { action = "register", id = entry.id,
    description = description, undo = undo, time = time.wall() }, { sync = true }))
  return entry
end

local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  return fs.cwd() .. "/" .. p:gsub("^%./", "")
end

-- The ledger's first line: who wrote it, for `kmsrun cleanup`'s checks (this
-- process's pid and start time, the runbook and its hash, where relative
-- policy paths start from). No command line: it can hold secrets.
function Run:ledger_header()
  self.identity = procinfo.identity("self")
  self:check_written("ledger.ndjson", self.evidence:append_json("ledger.ndjson", { action = "run",
    pid = self.identity.pid, starttime = self.identity.starttime, cwd = fs.cwd(),
    runbook = absolute(self.runbook.path), runbook_sha256 = crypto.hex(crypto.sha256(self.runbook.text or "")),
    out = absolute(self.evidence.dir), time = time.wall() }, { sync = true }))
end

function Run:run_cleanups()
  while #self.ledger > 0 do
    local entry = table.remove(self.ledger)
    local t = task.spawn(entry.fn)
    local ok, err = pcall(t.join, t)
    local rec = { description = entry.description, status = ok and "done" or "failed", error = (not ok) and tostring(err) or nil }
    self.cleanup_log[#self.cleanup_log + 1] = rec
    self:check_written("ledger.ndjson", self.evidence:append_json("ledger.ndjson", { action = ok and "undone" or "undo_failed",
      id = entry.id, description = entry.description, error = rec.error, time = time.wall() }, { sync = true }))
    events.emit("cleanup", rec)
    if not ok then
      self.cleanup_failed = true
      io.stderr:write("kmsrun: cleanup failed: ", entry.description, ": ", tostring(err), "\n")
    end
  end
end

return M
