-- Runs one block (setup, a case, teardown) as its own task under its deadline,
-- and records its status, error and failure code (dsl/outcome.lua).
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local steps = require "kmsrun.dsl.steps"
local outcome = require "kmsrun.dsl.outcome"

local M = {}

--- Runs block (kind "setup", "case" or "teardown"); returns its status.
function M.run(run, block, kind)
  block.steps = block.steps or {}
  local started = time.now()
  local limit = block.timeout or run.opts.case_timeout or run.target.case_timeout or 600
  local t = task.spawn(function()
    steps.set_context({ run = run, case = block, depth = 0, kind = kind })
    return run:guard(limit, kind == "case" and ("case '" .. block.name .. "'") or block.name, block.fn)
  end)
  run.current_task = t
  local ok, err = pcall(t.join, t)
  run.current_task = nil
  steps.set_context(nil)
  block.duration = time.now() - started
  if ok then
    block.status = "passed"
    return block.status
  end
  local status, code = outcome.of(err)
  -- A block failing while the run is being interrupted was stopped by it.
  if status ~= "timeout" and run.interrupted then status, code = "interrupted", "CANCELLED" end
  block.status, block.code = status, code
  if status == "timeout" then
    block.error = tostring(err)
    run.timed_out = true
    local last = block.steps[#block.steps]
    if last and last.status ~= "passed" then
      last.status = "timeout"
      last.actual = "no result before the deadline; waiting for: " .. err.waiting
    end
  elseif status == "interrupted" then
    block.error = "interrupted by " .. tostring(run.interrupted or "cancel")
  elseif status == "failed" then
    block.error = string.format("step '%s' failed at %s", err.step, err.location or "?")
  elseif code == "USAGE" then
    block.error = err.message
    run.usage_error = err.message
  else
    block.error = (t.traceback or tostring(err))
    run.runtime_error = block.error
  end
  return status
end

return M
