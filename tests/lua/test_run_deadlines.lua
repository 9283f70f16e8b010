-- run/deadlines.lua: the nearest deadline wins, guard raises a Timeout naming
-- what the work was waiting for, and never a negative duration.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local deadlines = require "kmsrun.run.deadlines"

-- The deadline fields of the runner's Run, with deadlines.lua's methods.
local function fake_run(run_deadline)
  return setmetatable({ deadlines = {}, run_deadline = run_deadline }, { __index = deadlines.methods })
end

local function near(a, b, eps) return math.abs(a - b) < (eps or 0.05) end

T.test("time_left is infinite without deadlines", function()
  T.eq(fake_run():time_left(), math.huge)
end)

T.test("time_left is the nearest of the run's and the nested deadlines", function()
  local now = time.now()
  local run = fake_run(now + 10)
  T.ok(near(run:time_left(), 10), "the run's deadline")
  run.deadlines = { now + 5, now + 2, now + 7 }
  T.ok(near(run:time_left(), 2), "the innermost nearest: " .. run:time_left())
  run.run_deadline = now + 1
  T.ok(near(run:time_left(), 1), "the run's, when nearer")
end)

T.test("guard returns fn's results and pops its deadline", function()
  local run = fake_run()
  local a, b = run:guard(5, "step", function()
    T.eq(#run.deadlines, 1, "its deadline is in force inside")
    T.ok(near(run:time_left(), 5))
    return 1, 2
  end)
  T.eq({ a, b }, { 1, 2 })
  T.eq(#run.deadlines, 0)
end)

T.test("an inner guard is capped by the outer one and both pop", function()
  local run = fake_run()
  run:guard(1, "case", function()
    run:guard(100, "step", function()
      T.eq(#run.deadlines, 2)
      T.ok(run:time_left() <= 1, "capped by the case's deadline")
    end)
    T.eq(#run.deadlines, 1)
  end)
  T.eq(#run.deadlines, 0)
end)

T.test("an expired guard raises a Timeout naming what it guarded and what was awaited", function()
  local run = fake_run()
  local started = time.now()
  local ok, err = pcall(run.guard, run, 0.05, "case 'slow'", function() time.sleep(10) end)
  T.eq(ok, false)
  T.ok(deadlines.is_timeout(err), "a Timeout: " .. tostring(err))
  T.ok(time.now() - started < 1, "it did not wait for the sleep")
  T.eq(err.what, "case 'slow'")
  T.contains(err.waiting, "time.sleep")
  T.match(tostring(err), "^case 'slow' timed out after 0%.05 s; waiting for: .*time%.sleep")
  T.eq(#run.deadlines, 0, "popped")
  T.eq(run:expiring(), nil, "expiring cleared")
end)

T.test("while the watchdog cancels the work, expiring() says what it was waiting for", function()
  local run = fake_run()
  T.eq(run:expiring(), nil, "no deadline has expired")
  local seen
  local ok, err = pcall(run.guard, run, 0.05, "case 'c'", function()
    pcall(time.sleep, 10) -- the cancellation, caught: the guard has not ended yet
    seen = run:expiring()
  end)
  T.eq(ok, false)
  T.ok(deadlines.is_timeout(err), tostring(err))
  T.contains(seen or "", "time.sleep")
  T.eq(run:expiring(), nil, "cleared when the guard ends")
end)

T.test("the outer deadline's expiry reaches through an inner guard as the outer's Timeout", function()
  local run = fake_run()
  local ok, err = pcall(run.guard, run, 0.05, "case 'c'", function()
    run:guard(100, "step", function() time.sleep(10) end)
  end)
  T.eq(ok, false)
  T.ok(deadlines.is_timeout(err), tostring(err))
  T.eq(err.what, "case 'c'")
end)

T.test("the other deadlines' sleeping watchdogs are not named as what was awaited", function()
  -- Every live task's wait is named (the test runner's own watchdog too), so the
  -- nested case is compared with a lone guard: the outer watchdog adds nothing.
  local run = fake_run()
  local _, alone = pcall(run.guard, run, 0.05, "rpc", function() time.sleep(10) end)
  local _, nested = pcall(run.guard, run, 5, "case", function()
    run:guard(0.05, "rpc", function() time.sleep(10) end)
  end)
  T.eq(nested.what, "rpc")
  T.eq(nested.waiting, alone.waiting)
end)

T.test("an enclosing deadline already passed: a Timeout at once, and no negative duration", function()
  local run = fake_run(time.now() - 1)
  local ok, err = pcall(run.guard, run, 5, "case 'late'", function() time.sleep(10) end)
  T.eq(ok, false)
  T.ok(deadlines.is_timeout(err))
  local s = tostring(err)
  T.contains(s, "case 'late' timed out: its deadline had already passed")
  T.eq(s:find("-%d"), nil, "no negative number in: " .. s)
end)

T.test("work that swallows the cancellation is killed GRACE seconds later, the overrun said", function()
  local grace = deadlines.GRACE
  deadlines.GRACE = 0.05
  local _ <close> = setmetatable({}, { __close = function() deadlines.GRACE = grace end })
  local run = fake_run()
  local after = false
  local t = task.spawn(function()
    return run:guard(0.05, "stubborn", function()
      pcall(time.sleep, 10) -- swallows the first cancel
      time.sleep(10)
      after = true
    end)
  end)
  local ok, err = pcall(t.join, t)
  T.eq(ok, false)
  T.eq(after, false)
  T.ok(deadlines.is_timeout(err), tostring(err))
  T.ok(err.overrun and err.overrun >= 0.04, "overrun recorded")
  T.match(tostring(err), "it caught the cancellation and ran on, so it was stopped %d+%.%d s after the deadline")
  T.eq(#run.deadlines, 0, "the kill closed the guard")
end)
