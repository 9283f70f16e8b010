-- run/block.lua: one block (setup, case, teardown) run as a task under its
-- deadline: its status, error and code, and what it sets on the run.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local block = require "kmsrun.run.block"
local steps = require "kmsrun.dsl.steps"
local api = require "kmsrun.dsl.api"
local deadlines = require "kmsrun.run.deadlines"

-- The part of the runner's Run a block and its steps read.
local function fake_run(fields)
  local run = setmetatable({
    opts = {}, target = { name = "fake" }, deadlines = {}, runbook = { kmss = {} },
    console = { step_start = function() end, step_end = function() end },
    policy_state = function() return {} end,
  }, { __index = deadlines.methods })
  for k, v in pairs(fields or {}) do run[k] = v end
  return run
end

local function case(fn, fields)
  local c = { name = "c1", fn = fn }
  for k, v in pairs(fields or {}) do c[k] = v end
  return c
end

T.test("a passing block is passed, with its steps and duration", function()
  local run = fake_run()
  local c = case(function() steps.run("a", function() end) end)
  T.eq(block.run(run, c, "case"), "passed")
  T.eq(c.status, "passed")
  T.eq({ c.error, c.code }, { nil, nil })
  T.eq(#c.steps, 1)
  T.ok(c.duration >= 0)
  T.eq(run.current_task, nil)
  T.eq(steps.context(), nil, "the step context is cleared")
end)

T.test("a failed step fails the block with EXPECTATION and names the step", function()
  local run = fake_run()
  local c = case(function() steps.run("expect_ok", function() steps.fail("OK", "denied") end) end)
  T.eq(block.run(run, c, "case"), "failed")
  T.eq(c.code, "EXPECTATION")
  T.match(c.error, "^step 'expect_ok' failed at ")
  T.eq(run.usage_error, nil)
  T.eq(run.runtime_error, nil)
end)

T.test("a block over its deadline times out and sets run.timed_out", function()
  local run = fake_run()
  local c = case(function() steps.run("wait", function() time.sleep(10) end) end, { timeout = 0.05 })
  T.eq(block.run(run, c, "case"), "timeout")
  T.eq(c.code, "TIMEOUT")
  T.match(c.error, "^case 'c1' timed out after 0%.05 s")
  T.eq(run.timed_out, true)
  T.eq({ c.steps[1].status, c.steps[1].code }, { "timeout", "TIMEOUT" })
end)

T.test("the deadline comes from the block, else --case-timeout, else the target", function()
  for _, x in ipairs {
    { run = { opts = { case_timeout = 0.05 } }, block = {} },
    { run = { target = { case_timeout = 0.05 } }, block = {} },
  } do
    local run = fake_run(x.run)
    local c = case(function() time.sleep(10) end, x.block)
    T.eq(block.run(run, c, "case"), "timeout")
  end
  local run = fake_run { opts = { case_timeout = 0.05 } }
  local c = case(function() time.sleep(0.1) end, { timeout = 5 })
  T.eq(block.run(run, c, "case"), "passed", "the block's own timeout wins")
end)

T.test("a timeout marks the last unfinished step (killed, it could not record itself)", function()
  local grace = deadlines.GRACE
  deadlines.GRACE = 0.05
  local _ <close> = setmetatable({}, { __close = function() deadlines.GRACE = grace end })
  local run = fake_run()
  local c = case(function()
    steps.run("done", function() end)
    steps.run("stubborn", function() pcall(time.sleep, 10) time.sleep(10) end)
  end, { timeout = 0.05 })
  T.eq(block.run(run, c, "case"), "timeout")
  T.eq(c.steps[1].status, "passed", "a passed step stays passed")
  T.eq(c.steps[2].status, "timeout")
  T.match(c.steps[2].actual, "^no result before the deadline; waiting for: ")
end)

T.test("a setup block's timeout names the block", function()
  local run = fake_run()
  local b = { name = "setup", fn = function() time.sleep(10) end, timeout = 0.05 }
  T.eq(block.run(run, b, "setup"), "timeout")
  T.match(b.error, "^setup timed out")
end)

T.test("a failure while the run is interrupted is an interruption", function()
  local run = fake_run { interrupted = "SIGINT" }
  local c = case(function() steps.run("s", function() steps.fail("OK", "connection reset") end) end)
  T.eq(block.run(run, c, "case"), "interrupted")
  T.eq({ c.code, c.error }, { "CANCELLED", "interrupted by SIGINT" })
end)

T.test("a timeout stays a timeout even while the run is interrupted", function()
  local run = fake_run { interrupted = "SIGTERM" }
  local c = case(function() time.sleep(10) end, { timeout = 0.05 })
  T.eq(block.run(run, c, "case"), "timeout")
end)

T.test("cancelling the block's task interrupts it", function()
  local run = fake_run()
  local c = case(function() time.sleep(10) end)
  local canceller = task.spawn(function()
    time.sleep(0.02)
    run.interrupted = "SIGINT"
    run.current_task:cancel()
  end)
  T.eq(block.run(run, c, "case"), "interrupted")
  T.eq({ c.code, c.error }, { "CANCELLED", "interrupted by SIGINT" })
  canceller:join()
end)

T.test("an error whose text merely ends with ': cancelled' is a runtime error, not an interruption", function()
  for _, fn in ipairs {
    function() error("upstream said: cancelled") end,
    function() steps.run("s", function() error("upstream said: cancelled") end) end,
    function() local ok, e = pcall(error, "cancelled") if not ok then error(e, 0) end end,
  } do
    local run = fake_run()
    local c = case(fn)
    T.eq(block.run(run, c, "case"), "error")
    T.eq(c.code, "RUNTIME")
    T.contains(c.error, "cancelled")
    T.eq(run.runtime_error, c.error)
  end
end)

T.test("a usage error is error/USAGE and sets run.usage_error", function()
  local run = fake_run()
  local c = case(function() api.usage_error("deploy: unknown option 'x'") end)
  T.eq(block.run(run, c, "case"), "error")
  T.eq(c.code, "USAGE")
  T.contains(c.error, "deploy: unknown option 'x'")
  T.eq(run.usage_error, c.error)
  T.eq(run.runtime_error, nil)
end)

T.test("a runtime error is error/RUNTIME with a traceback and sets run.runtime_error", function()
  local run = fake_run()
  local c = case(function() local t = nil; return t.field end)
  T.eq(block.run(run, c, "case"), "error")
  T.eq(c.code, "RUNTIME")
  T.contains(c.error, "attempt to index")
  T.contains(c.error, "traceback")
  T.eq(run.runtime_error, c.error)
  T.eq(run.usage_error, nil)
end)
