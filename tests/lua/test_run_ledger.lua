-- run/ledger.lua: defer appends a register line to ledger.ndjson at once;
-- run_cleanups undoes last-in-first-out, records each undo, and goes on after a
-- failing one. Driven with a real evidence directory and a small fake run.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local evidence = require "kmsrun.report.evidence"
local ledger = require "kmsrun.run.ledger"
local events = require "kmsrun.report.events"
local crypto = require "kmsrun.crypto"

local base = assert(fs.tmpdir("kmsrun-test-ledger"))
local n = 0

-- The fields of the runner's Run the ledger reads, with its methods.
local function fake_run()
  n = n + 1
  local run = setmetatable({
    evidence = assert(evidence.open(base .. "/out" .. n)),
    runbook = { path = "/runbooks/x.lua", text = "-- a runbook\n" },
    ledger = {}, cleanup_log = {}, written = {},
  }, { __index = ledger.methods })
  -- Stands for outputs.lua's check: records what each write returned.
  function run:check_written(name, ok, err) self.written[#self.written + 1] = { name = name, ok = ok, err = err } end
  return run
end

local function lines(run)
  local out = {}
  for line in assert(fs.read(run.evidence:path("ledger.ndjson"))):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

T.test("the first defer writes the header, then a register line at once", function()
  local run = fake_run()
  local entry = run:defer("stop server a", function() end, { kind = "dir", path = "/tmp/x" })
  local l = lines(run)
  T.eq(#l, 2, "header and register, before any cleanup")
  T.eq(l[1].action, "run")
  T.eq(l[1].runbook, "/runbooks/x.lua")
  T.eq(l[1].runbook_sha256, crypto.hex(crypto.sha256("-- a runbook\n")))
  T.eq(l[1].out, run.evidence.dir)
  T.ok(l[1].pid and l[1].starttime, "who wrote it")
  T.eq({ l[2].action, l[2].id, l[2].description }, { "register", 1, "stop server a" })
  T.eq(l[2].undo, { kind = "dir", path = "/tmp/x" })
  T.eq(entry.id, 1)
  run:defer("second", function() end)
  l = lines(run)
  T.eq(#l, 3, "one header only")
  T.eq(l[3].id, 2)
  T.eq(#run.written, 3)
  for _, w in ipairs(run.written) do T.eq(w.name, "ledger.ndjson") T.ok(w.ok, "written: " .. tostring(w.err)) end
end)

T.test("a process undo is recorded with what identifies that process", function()
  local run = fake_run()
  run:defer("first", function() end) -- writes the header: run.identity is this process
  run:defer("kill child", function() end, { kind = "process", pid = run.identity.pid })
  local u = lines(run)[3].undo
  T.eq(u.pid, run.identity.pid)
  T.eq(u.starttime, run.identity.starttime)
  T.ok(type(u.cmdline_sha256) == "string" and #u.cmdline_sha256 == 64, "cmdline hash")
  T.eq(u.ppid, run.identity.pid)
end)

T.test("run_cleanups runs the undos last-in-first-out and records each as undone", function()
  local run = fake_run()
  local order = {}
  for _, name in ipairs { "a", "b", "c" } do run:defer("undo " .. name, function() order[#order + 1] = name end) end
  local evs = {}
  events.set_sink(function(line) evs[#evs + 1] = json.decode(line) return true end)
  run:run_cleanups()
  events.set_sink(nil)
  T.eq(order, { "c", "b", "a" })
  T.eq(#run.ledger, 0)
  T.eq(run.cleanup_failed, nil)
  T.eq(run.cleanup_log, { { description = "undo c", status = "done" }, { description = "undo b", status = "done" },
    { description = "undo a", status = "done" } })
  local l = lines(run)
  T.eq({ l[5].action, l[5].id, l[6].id, l[7].id }, { "undone", 3, 2, 1 })
  T.eq(#evs, 3)
  T.eq({ evs[1].event, evs[1].description, evs[1].status }, { "cleanup", "undo c", "done" })
end)

T.test("a failing undo sets cleanup_failed, is recorded undo_failed, and the rest still run", function()
  local run = fake_run()
  local ran = {}
  run:defer("first", function() ran[#ran + 1] = "first" end)
  run:defer("broken", function() error("cannot stop", 0) end)
  run:defer("last", function() ran[#ran + 1] = "last" end)
  run:run_cleanups()
  T.eq(ran, { "last", "first" })
  T.eq(run.cleanup_failed, true)
  T.eq(run.cleanup_log[2], { description = "broken", status = "failed", error = "cannot stop" })
  local l = lines(run)
  T.eq({ l[5].action, l[6].action, l[7].action }, { "undone", "undo_failed", "undone" })
  T.eq(l[6].error, "cannot stop")
end)

T.test("each undo runs in its own task: one that waits works", function()
  local run = fake_run()
  local done = false
  run:defer("slow", function() require("kmsrun.time").sleep(0.01) done = true end)
  run:run_cleanups()
  T.ok(done)
end)

T.test("an undo registered during cleanup still runs", function()
  local run = fake_run()
  local ran = {}
  run:defer("outer", function() run:defer("late", function() ran[#ran + 1] = "late" end) ran[#ran + 1] = "outer" end)
  run:run_cleanups()
  T.eq(ran, { "outer", "late" })
end)

T.test("(cleanup of the test's directory)", function() T.ok(fs.remove(base)) end)
