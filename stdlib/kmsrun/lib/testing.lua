-- A small test runner for Lua-level tests, run as `kmsrun test FILE...`.
-- Each test runs in its own task; the summary line is "N passed, N failed".
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"

local T = {}
local registered = {}

local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local ok, cjson = pcall(require, "cjson")
  local ok2, s = pcall(cjson.encode, v)
  return (ok and ok2) and s or tostring(v)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

--- Registers a test.
function T.test(name, fn, opts)
  registered[#registered + 1] = { name = name, fn = fn, timeout = opts and opts.timeout or 60 }
end

function T.eq(actual, expected, msg)
  if not deep_eq(actual, expected) then
    fail(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", describe(expected), describe(actual)))
  end
end

function T.ok(v, msg)
  if not v then fail((msg or "expected a true value") .. ", got " .. describe(v)) end
  return v
end

function T.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    fail(string.format("%sexpected %s to match %q", msg and (msg .. ": ") or "", describe(s), pattern))
  end
end

function T.contains(s, plain, msg)
  if type(s) ~= "string" or not s:find(plain, 1, true) then
    fail(string.format("%sexpected %s to contain %q", msg and (msg .. ": ") or "", describe(s), plain))
  end
end

--- Asserts that fn raises an error whose message matches pattern; returns the message.
function T.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and (msg .. ": ") or "") .. "expected an error, none raised") end
  local s = tostring(err)
  if pattern and not s:find(pattern) then
    fail(string.format("%sexpected error matching %q, got %q", msg and (msg .. ": ") or "", pattern, s))
  end
  return s
end

--- Asserts that fn raises the cancellation itself (task.CANCELLED), not some
-- error whose text reads "cancelled".
function T.cancelled(fn, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and (msg .. ": ") or "") .. "expected the cancellation, no error raised") end
  if not task.is_cancelled(err) then
    fail(string.format("%sexpected the cancellation, got %s", msg and (msg .. ": ") or "", describe(err)))
  end
end

--- Loads and runs the test files; returns the process exit code.
function T.run(files)
  local passed, failed = 0, 0
  for _, file in ipairs(files) do
    registered = {}
    local chunk, err = loadfile(file, "t")
    if not chunk then
      io.stderr:write(err, "\n")
      return 2
    end
    chunk()
    for i, t in ipairs(registered) do
      local started = time.now()
      local worker = task.spawn(t.fn)
      local watchdog = task.spawn(function()
        time.sleep(t.timeout)
        worker:cancel()
      end)
      local ok, e = pcall(worker.join, worker)
      watchdog:cancel()
      local ms = (time.now() - started) * 1000
      if ok then
        passed = passed + 1
        io.stdout:write(string.format("ok %d - %s (%.0f ms)\n", i, t.name, ms))
      else
        failed = failed + 1
        if task.is_cancelled(e) then e = "timed out after " .. t.timeout .. " s (hang?)" end
        io.stdout:write(string.format("not ok %d - %s\n", i, t.name))
        local detail = (not task.is_cancelled(worker.error) and worker.traceback) or tostring(e)
        io.stdout:write("  ", (detail:gsub("\n", "\n  ")), "\n")
      end
      io.stdout:flush()
    end
  end
  io.stdout:write(string.format("%d passed, %d failed\n", passed, failed))
  return failed == 0 and 0 or 1
end

return T
