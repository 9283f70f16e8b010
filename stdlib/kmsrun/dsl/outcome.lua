-- What an error raised inside a step or a block (setup, case, teardown) means:
-- its status and its stable failure code (report.events.CODES). The one place
-- that reads error objects, so the report, the terminal and the event stream
-- can never classify the same failure differently.
local task = require "kmsrun.lib.task"
local deadlines = require "kmsrun.run.deadlines"

local M = {}

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f)
  return string.format("%s: %s\n  expected: %s\n  actual:   %s", f.location or "?", f.step,
    tostring(f.expected), tostring(f.actual))
end
M.Failure = Failure

--- A failed expectation: step name, expected, actual, detail, code, location.
function M.failure(fields) return setmetatable(fields, Failure) end

function M.is_failure(e) return getmetatable(e) == Failure end

--- status ("failed", "timeout", "interrupted" or "error") and code of error e.
function M.of(e)
  if M.is_failure(e) then return "failed", e.code or "EXPECTATION" end
  if deadlines.is_timeout(e) then return "timeout", "TIMEOUT" end
  if task.is_cancelled(e) then return "interrupted", "CANCELLED" end
  if type(e) == "table" and e.usage then return "error", "USAGE" end
  return "error", "RUNTIME"
end

return M
