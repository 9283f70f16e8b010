-- Runs a loaded runbook: auth servers, setup, cases, teardown, the cleanup
-- ledger, the report, the evidence archive and the exit code — on success,
-- failure, runbook error and Ctrl-C alike.
local core = require "kmsrun.core"
local time = require "kmsrun.time"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local events = require "kmsrun.report.events"
local evidence = require "kmsrun.report.evidence"
local console = require "kmsrun.report.console"
local exit_codes = require "kmsrun.run.exit_codes"
local cases = require "kmsrun.run.cases"
local deadlines = require "kmsrun.run.deadlines"
local run_block = require("kmsrun.run.block").run
local target_context = require "kmsrun.run.target_context"

local Run = {}
Run.__index = Run

local M = {}

function M.new(spec, opts)
  local r = setmetatable({
    runbook = spec, opts = opts, version = opts.version, target = opts.target,
    vars = opts.vars, var_decls = opts.var_decls,
    ledger = {}, cleanup_log = {}, policy_versions = {}, transcript_seq = 0,
    started = time.now(), started_wall = time.wall(), deadlines = {},
  }, Run)
  if opts.timeout then r.run_deadline = r.started + opts.timeout end
  r.console = console.new(opts)
  -- All a target's hooks get instead of the Run (run/target_context.lua).
  r.target_ctx = target_context.new(r)
  return r
end

-- The Run's methods, one concern per file: deadlines (time_left, guard, expiring), the
-- cleanup ledger (defer, run_cleanups), the DSL's services (rpc, transcript,
-- deploy, note), auth servers and policy flips (start_auth, set_policy), and
-- the written outputs (tally, write_outputs, check_written).
local ledger = require "kmsrun.run.ledger"
local services = require "kmsrun.run.services"
local policy_flips = require "kmsrun.run.policy_flips"
local outputs = require "kmsrun.run.outputs"
for _, part in ipairs { deadlines, ledger, services, policy_flips, outputs } do
  for name, fn in pairs(part.methods) do Run[name] = fn end
end
M.is_timeout = deadlines.is_timeout

-- The same selection `kmsrun plan --case` shows (run/cases.lua).
local function select_cases(self)
  return cases.select(self.runbook.cases, self.opts.cases or {}, self.opts.tags or {})
end

-- Phases of a run --------------------------------------------------------------

-- Opens the output directory and selects the cases; nil and an exit code if it cannot.
function Run:prepare()
  local out_dir = self.opts.out or string.format("kmsrun-out/%s-%s",
    self.runbook.path:match("([^/]+)%.lua$") or "runbook", os.date("%Y%m%d-%H%M%S"))
  if not self.opts.out and fs.exists(out_dir) then out_dir = out_dir .. "-" .. crypto.hex(crypto.random(2)) end
  -- Nothing to run is said before anything is created.
  local selected, serr = select_cases(self)
  if not selected then
    io.stderr:write("kmsrun: ", serr, "\n")
    return nil, exit_codes.USAGE
  end
  local ev, err = evidence.open(out_dir)
  if not ev then
    io.stderr:write("kmsrun: cannot create the output directory: ", tostring(err), "\n")
    return nil, exit_codes.USAGE
  end
  self.evidence = ev
  self.selected_cases = selected
  for _, c in ipairs(selected) do c.status, c.steps = nil, {} end
  return out_dir
end

-- First SIGINT/SIGTERM/SIGHUP: cancel the running block (busy code too: the host
-- preempts it), then tear down, clean up and report. Second: the running block is
-- killed (no pcall in it can stop that), teardown and cleanups are skipped (the
-- host still kills every child; the ledger keeps the rest for `kmsrun cleanup`),
-- and the report, junit.xml and archive are still written. Third: stop at once.
function Run:handle_signals()
  core.on_signal(function(name)
    if self.forced then
      io.stderr:write("\nkmsrun: third ", name, ": stopping now; processes are killed, no report\n")
      core.stop()
      return
    end
    if self.interrupted then
      io.stderr:write("\nkmsrun: second ", name, ": stopping the running code, skipping teardown and cleanups; "
        .. "writing the report (again to stop at once)\n")
      self.forced = true
      if self.current_task then self.current_task:kill("interrupted by a second " .. name) end
      return
    end
    self.interrupted = name
    io.stderr:write("\nkmsrun: ", name, " received: cancelling, cleaning up and writing the report (again to force)\n")
    if self.current_task then self.current_task:cancel() end
  end)
end

-- Setup, if declared; returns true if the cases may run.
function Run:run_setup()
  if not self.runbook.setup or self.interrupted then return true end
  self.setup_case = self.runbook.setup
  self.console:section("setup: " .. self.setup_case.name)
  local status = run_block(self, self.setup_case, "setup")
  if status == "passed" then return true end
  self.error = "setup failed: " .. tostring(self.setup_case.error)
  if status == "failed" then self.infra_error = true end
  return false
end

-- The selected cases in order; the first failure stops the rest unless --keep-going.
function Run:run_cases(cases, stop)
  for i, c in ipairs(cases) do
    if not stop and self.run_deadline and time.now() >= self.run_deadline then
      stop = true
      self.timed_out = true
      self.error = "the run's deadline (--timeout) passed"
    end
    local elsewhere = c.targets and not (function()
      for _, t in ipairs(c.targets) do if t == self.target.name then return true end end
    end)()
    if stop or self.interrupted or elsewhere then
      c.status = "skipped"
      c.skip_reason = self.interrupted and "run interrupted"
        or (not stop and elsewhere) and string.format("runs on target %s only (this run: %s)", table.concat(c.targets, ", "), self.target.name)
        or "an earlier failure stopped the run (use --keep-going)"
      events.emit("case_end", { case = c.name, id = c.id, status = "skipped", duration = 0, reason = c.skip_reason })
      if elsewhere and not stop then self.console:line(string.format("case %d/%d: %s: skipped, %s", i, #cases, c.name, c.skip_reason)) end
    else
      self.console:case_start(c, i, #cases)
      events.emit("case_start", { case = c.name, id = c.id })
      run_block(self, c, "case")
      events.emit("case_end", { case = c.name, id = c.id, status = c.status, duration = c.duration, error = c.error,
        code = c.code })
      self.console:case_end(c)
      if c.status ~= "passed" and not self.opts.keep_going then stop = true end
      if c.status == "error" and self.usage_error then stop = true end
    end
  end
end

-- Teardown, cleanups, the exit code, report and archive, the leak scan.
function Run:finish()
  if self.runbook.teardown and not self.forced then
    self.console:section("teardown")
    local td = self.runbook.teardown
    if run_block(self, td, "teardown") ~= "passed" then
      -- Not a case: without this the failure would show nowhere.
      self.error = self.error or ("teardown " .. td.status .. ": " .. tostring(td.error))
    end
  end
  if not self.forced then self:run_cleanups() end

  local counts = self:tally()
  -- An events consumer that saw only part of the run must not see it pass.
  if events.lost then self.infra_error = true end

  local code
  if self.interrupted then code = exit_codes.INTERRUPTED
  elseif self.usage_error or self.runtime_error then code = exit_codes.USAGE
  elseif self.timed_out then code = exit_codes.TIMEOUT
  elseif self.infra_error then code = exit_codes.INFRA
  elseif counts.failed > 0 then code = exit_codes.FAILED
  elseif self.cleanup_failed then code = exit_codes.CLEANUP
  else code = exit_codes.OK end
  self.exit_code = code
  self.status = exit_codes.status(code)

  self:write_outputs()
  code = self:fail_if_unwritten(code)
  local leak = self.evidence:leak_scan()
  if leak then
    io.stderr:write("kmsrun: a secret reached the output directory (", leak, "); failing the run\n")
    self.exit_code, self.status = exit_codes.SECRET_LEAK, exit_codes.status(exit_codes.SECRET_LEAK)
    code = exit_codes.SECRET_LEAK
  end
  events.emit("run_end", { status = self.status, exit_code = code, passed = counts.passed, failed = counts.failed,
    skipped = counts.skipped, error = self.error })
  self.console:summary(self, counts)
  return code
end

--- Runs everything; returns the exit code.
function Run:execute()
  local out_dir, code = self:prepare()
  if not out_dir then return code end
  self:handle_signals()
  self.console:banner(self)
  events.emit("run_start", { runbook = self.runbook.path, target = self.target.name, output = out_dir })
  local ready = self:start_auth_servers() and self:run_setup()
  self:run_cases(self.selected_cases, not ready)
  return self:finish()
end

return M
