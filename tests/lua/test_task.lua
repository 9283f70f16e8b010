local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"

T.test("sleep suspends only its own task", function()
  local order = {}
  local a = task.spawn(function() time.sleep(0.02); order[#order + 1] = "a" end)
  local b = task.spawn(function() order[#order + 1] = "b" end)
  a:join(); b:join()
  T.eq(order, { "b", "a" })
end)

T.test("parallel returns results in order", function()
  local x, y = task.parallel(function() time.sleep(0.01) return 1 end, function() return 2 end)
  T.eq({ x, y }, { 1, 2 })
end)

T.test("parallel: first error cancels the rest and propagates", function()
  local finished = false
  local err = T.raises(function()
    task.parallel(function() time.sleep(5); finished = true end, function() time.sleep(0.01); error("boom") end)
  end, "boom")
  T.eq(finished, false, "the sleeping sibling was cancelled")
  T.match(err, "boom")
end)

T.test("to-be-closed variables run when a task is cancelled", function()
  local closed = false
  local t = task.spawn(function()
    local guard <close> = setmetatable({}, { __close = function() closed = true end })
    time.sleep(10)
  end)
  time.sleep(0.01)
  T.ok(t:waiting():match("time.sleep"), "waiting reports the primitive")
  t:cancel()
  T.cancelled(function() t:join() end)
  T.ok(closed, "guard closed")
end)

T.test("the cancellation is one value: it prints as 'cancelled' and carries no position", function()
  local core = require "kmsrun.core"
  T.ok(type(core.CANCELLED) == "table", "a unique object, not a string")
  T.ok(rawequal(task.CANCELLED, core.CANCELLED))
  T.eq(tostring(core.CANCELLED), "cancelled")
  T.eq(task.error_text(core.CANCELLED), "cancelled")
  local t = task.spawn(function() time.sleep(10) end)
  time.sleep(0)
  t:cancel()
  local _, err = pcall(t.join, t)
  T.ok(rawequal(err, core.CANCELLED), "the wait raised the sentinel itself")
  -- Cancelled before it started: the same value.
  local early = task.spawn(function() end)
  early:cancel()
  T.cancelled(function() early:join() end)
end)

T.test("an error whose text reads 'cancelled' is not a cancellation", function()
  for _, e in ipairs { "cancelled", "upstream said: cancelled", "rb.lua:3: cancelled" } do
    local ok, err = pcall(error, e, 0)
    T.eq(ok, false)
    T.eq(task.is_cancelled(err), false, e)
  end
  T.eq(task.is_cancelled(setmetatable({}, { __tostring = function() return "cancelled" end })), false,
    "nor is another object that prints as 'cancelled'")
  local t = task.spawn(function() error("upstream said: cancelled") end)
  local ok, err = pcall(t.join, t)
  T.eq(ok, false)
  T.eq(task.is_cancelled(err), false)
end)

T.test("waiting outside a task is a clear error", function()
  local ok, err = coroutine.resume(coroutine.create(function() time.sleep(0) end))
  T.eq(ok, false)
  T.match(err, "cannot wait outside a task")
end)

T.test("misuse raises with the function name", function()
  T.raises(function() time.sleep(-1) end, "^[^:]*:%d+: time.sleep: seconds must be >= 0")
end)

T.test("busy code is preempted: other tasks and timers run, cancel reaches it", function()
  local time = require "kmsrun.time"
  local busy = task.spawn(function() local n = 0 while true do n = n + 1 end end)
  local t0 = time.now()
  time.sleep(0.1)
  T.ok(time.now() - t0 < 1, "the sleep ended while the other task spun")
  T.eq(busy:waiting(), "busy in Lua code")
  T.ok(busy:cancel())
  T.cancelled(function() busy:join() end)
end)

T.test("kill ends a task that swallows cancelled, closing its to-be-closed variables", function()
  local time = require "kmsrun.time"
  local closed = false
  local t = task.spawn(function()
    local _ <close> = setmetatable({}, { __close = function() closed = true end })
    while true do pcall(function() while true do end end) end
  end)
  time.sleep(0.05)
  t:cancel()
  time.sleep(0.1)
  T.ok(not t.done, "the cancel was swallowed")
  T.ok(t:kill("stopped"))
  T.ok(closed, "its to-be-closed variable was closed")
  local ok, err = pcall(t.join, t)
  T.eq({ ok, err }, { false, "stopped" })
  T.eq(t:kill(), false, "a finished task cannot be killed again")
end)

T.test("a plain coroutine inside a task is never preempted", function()
  local co = coroutine.wrap(function() for i = 1, 2e6 do end coroutine.yield(1) return 2 end)
  T.eq(co(), 1, "the nested coroutine yielded only where it said so")
  T.eq(co(), 2)
end)
