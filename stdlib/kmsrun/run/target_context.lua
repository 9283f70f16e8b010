-- What a target sees of the run: the whole contract between the runner and a
-- module under targets/ (docs/architecture.md, "A target"). Every hook of a
-- target gets this object as its first argument, never the Run, so the Run's
-- fields can change without a target noticing, and a target cannot leave data
-- on the Run for another module to find. Reading a field the contract does not
-- name, or writing any field, raises: a target keeps its own data in ctx.state.
local M = {}

local Context = {}

--- An undo action for the end of the run (run/ledger.lua): last registered, first run;
-- `undo` describes it for `kmsrun cleanup OUTDIR` after a killed run.
function Context:defer(description, fn, undo) return self[Context].run:defer(description, fn, undo) end

--- A line in the report (the running case's notes) and on the terminal.
function Context:note(msg) return self[Context].run:note(msg) end

--- A transient progress line on the terminal (not in the report).
function Context:progress(msg) return self[Context].run.console:progress(msg) end

--- Seconds left before the nearest deadline (case, step, --timeout); math.huge if none.
function Context:time_left() return self[Context].run:time_left() end

--- Whether the run has gone wrong so far: interrupted, a run-level error, the setup
-- not passed, or a selected case neither passed nor skipped. A target that keeps
-- logs only of failed runs asks this when it removes an instance.
function Context:failed()
  local run = self[Context].run
  if run.interrupted or run.error then return true end
  if run.setup_case and run.setup_case.status and run.setup_case.status ~= "passed" then return true end
  for _, c in ipairs(run.selected_cases or {}) do
    if c.status and c.status ~= "passed" and c.status ~= "skipped" then return true end
  end
  return false
end

-- The part of the output directory a target writes (report/evidence.lua): paths
-- relative to it, opened beneath it. Looked up at each call: the directory is
-- opened after the context is made.
local function evidence_of(run)
  local view = {}
  for _, name in ipairs { "path", "mkdir", "write", "json" } do
    view[name] = function(_, ...)
      local ev = run.evidence
      return ev[name](ev, ...)
    end
  end
  return setmetatable(view, { __newindex = function() error("ctx.evidence is read-only", 2) end })
end

-- The run's variables, readable but not writable: a target's defaults live in its
-- `vars` declarations, not in values it sets for other modules to find.
local function read_only(t, what)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k) error(string.format("%s is read-only (setting '%s')", what, tostring(k)), 2) end,
    __pairs = function() return next, t, nil end,
  })
end

M.FIELDS = { "vars", "kmss", "auths", "evidence", "state", "defer", "note", "progress", "time_left", "failed" }

local STRICT = {
  __index = function(_, k)
    local m = Context[k]
    if m then return m end
    error(string.format("the target context has no field '%s' (a target sees only: %s; its own data goes in ctx.state)",
      tostring(k), table.concat(M.FIELDS, ", ")), 2)
  end,
  __newindex = function(_, k)
    error(string.format("the target context is read-only (setting '%s'); a target's own data goes in ctx.state",
      tostring(k)), 2)
  end,
}

--- The context of `run` for its target (runner.lua makes one per run).
function M.new(run)
  return setmetatable({
    [Context] = { run = run }, -- private: only this module holds the key
    vars = read_only(run.vars or {}, "ctx.vars"),
    kmss = run.runbook.kmss or {},
    auths = run.runbook.auths or {},
    evidence = evidence_of(run),
    state = {},
  }, STRICT)
end

return M
