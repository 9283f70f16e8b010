-- Steps: every DSL action inside a case is one recorded step (name, expected,
-- actual, status, duration, runbook location). A failed expectation raises a
-- StepFailure, which ends the case and names the step, the expected and the actual.
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local api = require "kmsrun.dsl.api"
local events = require "kmsrun.report.events"

local M = {}

local outcome = require "kmsrun.dsl.outcome"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
M.Failure = outcome.Failure
M.is_failure = outcome.is_failure

local current -- {run=, case=, depth=}

function M.set_context(ctx) current = ctx end
function M.context() return current end

--- Raises a step failure for the running step. code: a failure code of
-- events.CODES (default "EXPECTATION"): "TRANSPORT", "TIMEOUT", "INFRA".
function M.fail(expected, actual, detail, code)
  local step = current and current.step
  error(outcome.failure {
    step = step and step.name or "?",
    expected = expected,
    actual = actual,
    detail = detail,
    code = code or "EXPECTATION",
    location = step and step.location or api.runbook_location(),
  }, 0)
end

--- Runs fn as a recorded step named name (nested calls are part of the outer step).
-- fn returns its results; it may set step.expected / step.actual / step.detail.
function M.run(name, fn, ...)
  local ctx = current
  if not ctx or not ctx.case or ctx.depth > 0 then
    return fn({}, ...)
  end
  local step = { name = name, location = api.runbook_location(), started = time.now(), status = "running" }
  ctx.step = step
  ctx.depth = ctx.depth + 1
  local steps = ctx.case.steps
  steps[#steps + 1] = step
  step.policies = ctx.run:policy_state()
  events.emit("step_start", { case = ctx.case.name, step = name, location = step.location, phase = ctx.kind })
  ctx.run.console:step_start(step)
  local results = table.pack(task.pcall(fn, step, ...))
  ctx.depth = ctx.depth - 1
  ctx.step = nil
  step.duration = time.now() - step.started
  step.started = nil
  if results[1] then
    step.status = "passed"
  else
    local e = results[2]
    step.status, step.code = outcome.of(e)
    if step.status == "failed" then
      step.expected, step.actual, step.detail = e.expected, e.actual, e.detail
    elseif step.status == "timeout" then
      step.actual = "no result before the deadline; waiting for: " .. e.waiting
    elseif step.status == "interrupted" and ctx.run:expiring() then
      -- The deadline's watchdog cancelled the step: a timeout, not an interrupt.
      step.status, step.code = "timeout", "TIMEOUT"
      step.actual = "no result before the deadline; waiting for: " .. ctx.run:expiring()
    elseif step.status == "error" then
      step.actual = task.error_text(e)
    end
  end
  local last = ctx.case.last_rpc
  if last and not results[1] then
    -- What the step last saw on the wire, for the terminal; the bundle has it all.
    local body = last.response
    if type(body) == "table" then body = json.encode(body) end
    -- Without a status the error is already shown as "failed: <error>".
    body = tostring(body or (last.status and last.error) or "")
    if #body > 300 then body = body:sub(1, 300) .. "…" end
    local request = last.request
    if type(request) == "table" then request = json.encode(request) end
    step.last_rpc = string.format("%s %s %s -> %s %s", last.kms or "?", last.method or "?",
      request and tostring(request) or "{}",
      last.status and ("HTTP " .. last.status) or ("failed: " .. tostring(last.error)), body)
    -- The tail of the log of the instance that answered, unless the step has one.
    if not step.detail then
      for _, h in ipairs(ctx.run.runbook.kmss or {}) do
        if h.name == last.kms then step.detail = ctx.run:log_tail(h) end
      end
    end
  end
  -- An instance that died during the step (a crash, e.g. relayed by another KMS as a
  -- TLS or connection error) is named, so the failure does not read as a network problem.
  if not results[1] and ctx.run.target and ctx.run.target.exited then
    -- One short yield lets the loop reap a child that has just exited.
    pcall(time.sleep, 0.01)
    for _, h in ipairs(ctx.run.runbook.kmss or {}) do
      local gone = h.deployed and not h.crash_reported and ctx.run.target.exited(ctx.run.target_ctx, h, true)
      if gone then
        h.crash_reported = true
        step.detail = string.format("%s is not running any more: %s; it crashed during this step%s", h.name, gone,
          step.detail and ("\n" .. step.detail) or "")
      end
    end
  end
  -- What the step saw may hold a secret tainted meanwhile (the terminal is not scrubbed).
  local scrub = redact.scrub
  step.expected, step.actual, step.detail, step.last_rpc = scrub(step.expected), scrub(step.actual), scrub(step.detail), scrub(step.last_rpc)
  events.emit("step_end", { case = ctx.case.name, step = name, status = step.status, code = step.code,
    expected = step.expected, actual = step.actual, duration = step.duration, location = step.location,
    last_rpc = step.last_rpc, rpc_seq = step.rpc_seq, phase = ctx.kind })
  ctx.run.console:step_end(step)
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

return M
