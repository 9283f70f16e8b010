-- Deadlines at every level of a run (run, case, step, RPC): the innermost wait
-- gets the nearest, so a retry loop never outlives the case it belongs to.
-- Mixed into the Run object of runner.lua (self.run_deadline, self.deadlines).
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"

local M = {}
local Run = {} -- the methods, copied onto runner's Run
M.methods = Run

local Timeout = {}
Timeout.__index = Timeout
Timeout.__tostring = function(t)
  -- An enclosing deadline that had already passed leaves no time at all: never a
  -- negative duration ("timed out after -0.0044 s").
  local s
  if t.seconds <= 0 then
    s = string.format("%s timed out: its deadline had already passed; waiting for: %s", t.what, t.waiting)
  else
    s = string.format("%s timed out after %g s; waiting for: %s", t.what, t.seconds, t.waiting)
  end
  if t.overrun then
    s = s .. string.format("; it caught the cancellation and ran on, so it was stopped %.1f s after the deadline", t.overrun)
  end
  return s
end
M.Timeout = Timeout

function M.is_timeout(e) return getmetatable(e) == Timeout end

-- What the work of an expired deadline was waiting for, per Run, from the moment its
-- watchdog cancels the work until the guard ends. Held here, not on the Run: only
-- Run:expiring() reads it.
local expiring = setmetatable({}, { __mode = "k" })

--- While a deadline's watchdog cancels the running work: what that work was waiting
-- for (so the step being cancelled reports a timeout, not an interrupt); else nil.
function Run:expiring() return expiring[self] end

--- Seconds left before the nearest deadline (math.huge if none).
function Run:time_left()
  local d = self.run_deadline or math.huge
  for _, x in ipairs(self.deadlines) do d = math.min(d, x) end
  return d - time.now()
end

local function describe_waits(exclude)
  local waits = {}
  for _, t in ipairs(task.live()) do
    local w = not exclude[t] and t:waiting()
    if w and not w:match("^join ") and w ~= "parallel" and w ~= "suspend" then waits[#waits + 1] = w end
  end
  table.sort(waits)
  return #waits > 0 and table.concat(waits, "; ") or "nothing (busy in Lua code)"
end

-- How long a task may run on after its deadline cancelled it (unwinding: its
-- handlers and to-be-closed variables) before it is killed, which no pcall stops.
M.GRACE = 2

--- Runs fn in the calling task with a deadline of `seconds` (capped by the
-- enclosing ones). On expiry what the task waits for is cancelled (busy code
-- too: the host preempts it) and a Timeout error naming where it was waiting is
-- raised. A task that catches the cancellation and runs on is killed GRACE
-- seconds later: the second cancel cannot be swallowed.
function Run:guard(seconds, what, fn)
  local limit = math.min(seconds or math.huge, self:time_left())
  if limit == math.huge then return fn() end
  local deadline = time.now() + math.max(0, limit)
  local me = task.current()
  local expired
  self.watchdogs = self.watchdogs or {}
  local watchdog
  watchdog = task.spawn(function()
    time.sleep(math.max(0, deadline - time.now()))
    -- The other deadlines' watchdogs sleep too; they are not what the work waits for.
    local exclude = {}
    for w in pairs(self.watchdogs) do exclude[w] = w ~= watchdog end
    expired = describe_waits(exclude)
    expiring[self] = expired
    me:cancel()
    time.sleep(M.GRACE)
    me:kill(setmetatable({ what = what, seconds = limit, waiting = expired, overrun = time.now() - deadline }, Timeout))
  end)
  -- Undone however the guard ends, a kill included (it closes pending variables).
  local depth = #self.deadlines + 1
  self.deadlines[depth] = deadline
  self.watchdogs[watchdog] = true
  local _ <close> = setmetatable({}, { __close = function()
    for i = #self.deadlines, depth, -1 do self.deadlines[i] = nil end
    self.watchdogs[watchdog] = nil
    expiring[self] = nil
    if task.current() ~= watchdog then watchdog:cancel() end
  end })
  local results = table.pack(task.pcall(fn))
  if expired then
    error(setmetatable({ what = what, seconds = limit, waiting = expired }, Timeout), 0)
  end
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

return M
