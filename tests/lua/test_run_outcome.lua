-- dsl/outcome.lua: the one classification of an error raised in a step or a
-- block into a status and a stable failure code (report/events.lua CODES).
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local outcome = require "kmsrun.dsl.outcome"
local deadlines = require "kmsrun.run.deadlines"
local api = require "kmsrun.dsl.api"
local events = require "kmsrun.report.events"

-- The error a real cancelled task ends with (not a hand-written string).
local function cancellation()
  local t = task.spawn(function() time.sleep(10) end)
  time.sleep(0)
  t:cancel()
  local ok, err = pcall(t.join, t)
  assert(not ok)
  return err
end

local function raised(fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error")
  return err
end

T.test("a step failure is 'failed' with its own code, EXPECTATION by default", function()
  T.eq({ outcome.of(outcome.failure { step = "s", expected = 1, actual = 2 }) }, { "failed", "EXPECTATION" })
  T.eq({ outcome.of(outcome.failure { step = "s", code = "TRANSPORT" }) }, { "failed", "TRANSPORT" })
end)

T.test("a deadline's Timeout is 'timeout' / TIMEOUT", function()
  local e = setmetatable({ what = "case 'x'", seconds = 1, waiting = "time.sleep" }, deadlines.Timeout)
  T.eq({ outcome.of(e) }, { "timeout", "TIMEOUT" })
end)

T.test("a cancelled task is 'interrupted' / CANCELLED", function()
  T.eq({ outcome.of(cancellation()) }, { "interrupted", "CANCELLED" })
end)

T.test("a DSL usage error is 'error' / USAGE", function()
  local e = raised(function() api.usage_error("wrong argument") end)
  T.eq({ outcome.of(e) }, { "error", "USAGE" })
end)

T.test("any other error is 'error' / RUNTIME", function()
  T.eq({ outcome.of(raised(function() error("boom") end)) }, { "error", "RUNTIME" })
  T.eq({ outcome.of(raised(function() error({ some = "table" }) end)) }, { "error", "RUNTIME" })
  T.eq({ outcome.of(raised(function() return nil + 1 end)) }, { "error", "RUNTIME" })
end)

T.test("every code outcome gives is a documented failure code", function()
  for _, e in ipairs { outcome.failure {}, setmetatable({ waiting = "" }, deadlines.Timeout), cancellation(),
    raised(function() api.usage_error("x") end), "boom" } do
    local _, code = outcome.of(e)
    T.ok(events.CODES[code], "code " .. tostring(code) .. " in events.CODES")
  end
end)

T.test("a failure prints its location, step, expected and actual", function()
  local s = tostring(outcome.failure { step = "expect_ok", location = "rb.lua:7", expected = "OK", actual = "HTTP 500" })
  T.eq(s, "rb.lua:7: expect_ok\n  expected: OK\n  actual:   HTTP 500")
  T.ok(outcome.is_failure(outcome.failure {}))
  T.eq(outcome.is_failure({}), false)
end)
