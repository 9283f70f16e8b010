-- Error texts (issue 12, point 6), the repro as the test: a 5 MB error is cut to its
-- head and tail with the size cut said, in report.json, junit.xml, the events and
-- on the terminal; an error value that is not a string keeps its value; control
-- characters in a message reach the terminal escaped.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

local RUNBOOK = [[
runbook { description = "errors" }
case("table error", function() error({ code = 42, why = "nope" }) end)
case("nil error", function() error(nil) end)
case("huge error", function() error("HEAD" .. string.rep("A", 5000000) .. "TAIL", 0) end)
case("control characters", function() error("red \27[31mALERT\27[0m\rover", 0) end)
]]

T.test("a 5 MB error is capped everywhere; a table error keeps its value; controls are escaped", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/errors.lua", RUNBOOK))
  local r = kit.kmsrun(dir, { dir .. "/errors.lua", "--keep-going", "--out", dir .. "/out", "--events", dir .. "/ev.ndjson" })
  T.eq(r.code, 2, r.stderr)
  local sizes = {
    ["report.json"] = fs.stat(dir .. "/out/report.json").size, ["junit.xml"] = fs.stat(dir .. "/out/junit.xml").size,
    events = fs.stat(dir .. "/ev.ndjson").size, stdout = #r.stdout, stderr = #r.stderr,
  }
  for name, size in pairs(sizes) do T.ok(size < 200 * 1024, name .. " is " .. size .. " bytes") end
  local report = json.decode(fs.read(dir .. "/out/report.json"))
  local huge = report.cases[3].error
  T.match(huge, "HEADAAAA")
  T.contains(huge, "AAAATAIL")
  T.match(huge, "%[%d+ bytes cut of 500%d%d%d%d%]")
  T.match(fs.read(dir .. "/out/junit.xml"), "bytes cut of 500%d%d%d%d%]")
  T.match(fs.read(dir .. "/ev.ndjson"), "bytes cut of 500%d%d%d%d%]")
  T.match(r.stdout, "HEADA+\n *… %[%d+ bytes cut of 500%d%d%d%d%] …\n *A+TAIL")
  T.contains(report.cases[1].error, "error object (table): {code = 42, why = \"nope\"}")
  T.contains(report.cases[2].error, "error object (nil): nil")
  T.contains(r.stdout, "error object (table): {code = 42")
  T.ok(not r.stdout:find("[\27\r]"), "no raw ESC or CR on the terminal")
  T.contains(r.stdout, "red \\u001b[31mALERT\\u001b[0m\\rover")
  fs.remove(dir)
end)

T.test("a deadline that had already passed is never 'timed out after -0.0044 s'", function()
  local deadlines = require "kmsrun.run.deadlines"
  local time = require "kmsrun.time"
  local run = setmetatable({ deadlines = {}, run_deadline = time.now() - 0.0044 }, { __index = deadlines.methods })
  local ok, err = pcall(run.guard, run, 5, "step 'late'", function() time.sleep(0.5) end)
  T.eq(ok, false)
  T.ok(deadlines.is_timeout(err), "a timeout: " .. tostring(err))
  T.ok(not tostring(err):find("after %-"), tostring(err))
  T.contains(tostring(err), "step 'late' timed out: its deadline had already passed")
end)

T.test("a traceback shows the runbook's frames where the error was raised, not the re-raise", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/tb.lua", table.concat({
    'runbook { description = "tracebacks" }',
    "local function helper(x)",
    "  return x.field.deeper",
    "end",
    'case("in a step", function() step("inner", function() helper({}) end) end)',
    'case("in the case", function() helper({}) end)',
    'case("a table error", function() step("t", function() error({ code = 8 }) end) end)',
  }, "\n") .. "\n"))
  local r = kit.kmsrun(dir, { dir .. "/tb.lua", "--keep-going", "--out", dir .. "/out" })
  T.eq(r.code, 2, r.stderr)
  local report = json.decode(fs.read(dir .. "/out/report.json"))
  for i, line in ipairs({ 5, 6 }) do
    local e = report.cases[i].error
    T.contains(e, "tb.lua:3: in upvalue 'helper'")
    T.contains(e, "tb.lua:" .. line .. ": in function")
    T.ok(not e:find("deadlines.lua", 1, true) and not e:find("task.lua", 1, true), "no re-raise frames: " .. e)
  end
  T.contains(report.cases[3].error, "error object (table): {code = 8}")
  T.contains(report.cases[3].error, "tb.lua:7: in function")
  T.contains(report.cases[3].steps[1].actual, "error object (table): {code = 8}")
  T.contains(r.stdout, "tb.lua:3: in upvalue 'helper'")
  fs.remove(dir)
end)
