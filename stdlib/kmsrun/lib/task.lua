-- Tasks: the scheduler written on kmsrun.core's start/suspend/wake/cancel.
-- Each task is a coroutine; waiting primitives suspend only their own task.
local core = require "kmsrun.core"

local M = {}
local Task = {}
Task.__index = Task

local live = setmetatable({}, { __mode = "k" }) -- task -> true while not done
local by_co = setmetatable({}, { __mode = "k" }) -- coroutine -> task

local function finish(t, ok, ...)
  t.done, t.ok = true, ok
  if ok then t.results = table.pack(...) else t.error = ... end
  live[t] = nil
  local waiters = t.waiters
  t.waiters = {}
  for _, co in ipairs(waiters) do core.wake(co) end
  if t.on_done then t.on_done(t) end
end

-- A readable text of an error value that is not a string (error({code = 42}),
-- error(nil), error(false)): its value, not a bare traceback. Depth and width
-- bounded: an error object may be large or cyclic.
local function describe(e, depth)
  depth = depth or 0
  local mt = getmetatable(e)
  if mt and mt.__tostring then
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then return s end
  end
  if type(e) == "string" then return string.format("%q", e) end
  if type(e) ~= "table" then return tostring(e) end
  if depth >= 2 then return "{...}" end
  local keys = {}
  for k in pairs(e) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, k in ipairs(keys) do
    if i > 20 then parts[#parts + 1] = "..." break end
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. describe(k, depth + 1) .. "]")
    parts[#parts + 1] = key .. " = " .. describe(e[k], depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- The text of an error value: itself if a string, else "error object (type): value".
function M.error_text(e)
  if type(e) == "string" then return e end
  if rawequal(e, core.CANCELLED) then return "cancelled" end
  return string.format("error object (%s): %s", type(e), describe(e))
end

-- A traceback of e taken where it was raised, cut where the protected call began:
-- the frames below are the caller's machinery, not the code that failed.
local function traceback_of(e)
  local tb = debug.traceback(M.error_text(e), 3)
  local cut = tb:find("\n\t%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

-- The traceback of the error a task is unwinding with, kept from the innermost
-- M.pcall that saw it: re-raised by the layers above (steps, deadlines), the
-- error keeps the frames of the code that raised it.
local function remember(e)
  local t = M.current()
  if not t or rawequal(e, core.CANCELLED) then return e end
  if not (t.origin and rawequal(t.origin.error, e)) then
    t.origin = { error = e, traceback = traceback_of(e) }
  end
  return e
end

--- pcall that keeps, for the running task, the traceback of the error where it was
-- raised (the task's traceback then shows the failing code, not the re-raise).
function M.pcall(fn, ...)
  return xpcall(fn, remember, ...)
end

--- Runs fn(...) in a new task; returns the task handle.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then error("task.spawn: fn must be a function, got " .. type(fn), 2) end
  local t = setmetatable({ done = false, waiters = {} }, Task)
  t.co = coroutine.create(function(...)
    t.started = true
    local traceback
    local function handler(e)
      if t.origin and rawequal(t.origin.error, e) then traceback = t.origin.traceback
      else traceback = debug.traceback(M.error_text(e), 2) end
      return e
    end
    finish(t, xpcall(fn, handler, ...))
    t.traceback = traceback
  end)
  by_co[t.co] = t
  live[t] = true
  core.start(t.co, ...)
  return t
end

--- The task running the caller, or nil outside any task.
function M.current()
  return by_co[coroutine.running()]
end

local function wait_done(t)
  while not t.done do
    local me = coroutine.running()
    t.waiters[#t.waiters + 1] = me
    core.suspend("join " .. tostring(t))
  end
end

--- Waits for the task; returns its results or re-raises its error object.
function Task:join()
  wait_done(self)
  if self.ok then return table.unpack(self.results, 1, self.results.n) end
  error(self.error, 0)
end

--- Cancels the task: what it waits for is aborted and it unwinds with core.CANCELLED.
function Task:cancel()
  if self.done then return false end
  if not self.started then
    core.cancel(self.co)
    finish(self, false, core.CANCELLED)
    return true
  end
  return core.cancel(self.co)
end

--- Ends the task for good, with `err` (default "killed") as its error: for a task
-- that caught `cancelled` and ran on. What it waits for is aborted and its pending
-- to-be-closed variables are closed; no pcall inside it can stop this.
function Task:kill(err)
  if self.done then return false end
  if self.co == coroutine.running() then error("task:kill: a task cannot kill itself", 2) end
  core.kill(self.co)
  finish(self, false, err == nil and "killed" or err)
  return true
end

--- What the task is waiting for right now (for diagnostics), or nil.
function Task:waiting()
  return (not self.done) and core.waiting(self.co) or nil
end

function Task:__tostring()
  return string.format("task %s (%s)", tostring(self.co):match("0x%x+") or "?",
    self.done and (self.ok and "done" or "failed") or "running")
end

--- Every task not finished yet.
function M.live()
  local list = {}
  for t in pairs(live) do list[#list + 1] = t end
  return list
end

--- The one value a cancelled task's waits raise (its tostring is "cancelled").
M.CANCELLED = core.CANCELLED

--- True if err is the error raised in a cancelled task: that value itself, so no
-- message that merely reads "...: cancelled" passes for a cancellation.
function M.is_cancelled(err)
  return rawequal(err, core.CANCELLED)
end

--- For long-running services: waits until SIGTERM, SIGINT or SIGHUP (returns its name),
-- or until done() is true after the task was woken (returns nil).
function M.wait_for_signal(what, done)
  local me, got = coroutine.running(), nil
  core.on_signal(function(name)
    got = name
    core.wake(me)
  end)
  while not got and not (done and done()) do core.suspend(what or "until SIGTERM or SIGINT") end
  return got
end

--- Runs the functions concurrently and returns the first result of each, in order.
-- The first error cancels the others (waiting for them to unwind) and is re-raised.
function M.parallel(...)
  local fns = table.pack(...)
  local me = coroutine.running()
  local tasks, failed = {}, nil
  local function on_done(t)
    if not t.ok and not failed then failed = t end
    core.wake(me)
  end
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then error("parallel: argument " .. i .. " must be a function, got " .. type(fns[i]), 2) end
    tasks[i] = M.spawn(fns[i])
    tasks[i].on_done = on_done
  end
  local function all_done()
    for _, t in ipairs(tasks) do if not t.done then return false end end
    return true
  end
  local ok, err = pcall(function()
    while not all_done() and not failed do core.suspend("parallel") end
  end)
  if not ok or failed then
    for _, t in ipairs(tasks) do t.on_done = nil; t:cancel() end
    for _, t in ipairs(tasks) do wait_done(t) end
    if not ok then error(err, 0) end
    error(failed.error, 0)
  end
  local results = {}
  for i, t in ipairs(tasks) do results[i] = t.results[1] end
  return table.unpack(results, 1, fns.n)
end

return M
