-- Issue 12, point 4: deadlines and signals reach running Lua code. Each test is
-- the repro: the exit code, how long it took, and that the report, junit.xml and
-- archive are written and no child is left.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local H = dofile(here .. "/../security/harness.lua")

local function outputs_written(out)
  T.ok(fs.read(out .. "/report.json"), "report.json written")
  T.ok(fs.read(out .. "/junit.xml"), "junit.xml written")
  local st = fs.stat(out .. "/evidence.tar.gz")
  T.ok(st and st.size > 0, "evidence.tar.gz written")
end

local BUSY = [[
runbook { description = "busy" }
case("spin", function() while true do end end)
]]
local SWALLOW = [[
runbook { description = "swallows cancelled" }
case("spin", function()
  log("spinning")
  while true do pcall(function() while true do end end) end
end)
]]

T.test("`while true do end` under --timeout 2 ends with exit 4", function()
  local d = H.workdir("busy")
  local code, log, took = H.run(d, { "--out", d .. "/out", "--timeout", "2", H.runbook(d, "busy", BUSY) }, 30)
  T.eq(code, 4, log)
  T.ok(took < 10, string.format("ended %.1f s after start", took))
  T.contains(log, "busy in Lua code")
  outputs_written(d .. "/out")
  H.cleanup(d)
end)

T.test("a case that swallows `cancelled` is stopped and reported as such", function()
  local d = H.workdir("swallow")
  local code, log, took = H.run(d, { "--out", d .. "/out", "--timeout", "2", H.runbook(d, "swallow", SWALLOW) }, 30)
  T.eq(code, 4, log)
  T.ok(took < 12, string.format("ended %.1f s after start", took))
  T.contains(log, "caught the cancellation and ran on")
  local report = fs.read(d .. "/out/report.json") or ""
  T.contains(report, "caught the cancellation")
  outputs_written(d .. "/out")
  H.cleanup(d)
end)

for _, sig in ipairs { "INT", "TERM", "HUP" } do
  T.test("SIG" .. sig .. " on CPU-bound code: exit 130, report and archive written", function()
    local d = H.workdir("sig" .. sig)
    local rb = H.runbook(d, "busy", [[
runbook { description = "busy" }
case("spin", function() log("spinning") while true do end end)
]])
    local p, log = H.start(d, { "--out", d .. "/out", rb })
    T.ok(H.wait_for(log, "spinning"), "the case is spinning")
    p:signal(sig)
    local code = p:wait(20)
    T.eq(code, 130, fs.read(log))
    T.contains(fs.read(d .. "/out/report.json") or "", "interrupted")
    outputs_written(d .. "/out")
    H.cleanup(d)
  end)
end

T.test("a second SIGINT after the case swallowed the first still writes the report", function()
  local d = H.workdir("sig2")
  local p, log = H.start(d, { "--out", d .. "/out", H.runbook(d, "swallow", SWALLOW) })
  T.ok(H.wait_for(log, "spinning"), "the case is spinning")
  p:signal("INT")
  require("kmsrun.time").sleep(0.5)
  T.ok(p:wait(0.1) == nil, "the first SIGINT was swallowed by the case")
  p:signal("INT")
  local code = p:wait(20)
  T.eq(code, 130, fs.read(log))
  T.contains(fs.read(log) or "", "second SIGINT")
  outputs_written(d .. "/out")
  H.cleanup(d)
end)

T.test("os.exit in a case ends through the run's finish (exit 2, report written)", function()
  local d = H.workdir("exit")
  local code, log = H.run(d, { "--out", d .. "/out", "--host-access", H.runbook(d, "exit", [[
runbook { description = "exits" }
case("exit", function() os.exit(7) end)
]]) })
  T.eq(code, 2, log)
  T.contains(log, "os.exit is not available")
  outputs_written(d .. "/out")
  H.cleanup(d)
end)

T.test("os.execute('sleep 15') under host access obeys --timeout 2 and leaves no child", function()
  local d = H.workdir("execute")
  local rb = H.runbook(d, "exec", [[
runbook { description = "shell", host_access = true }
case("sleep", function() os.execute("echo $$ > child.pid; exec sleep 15") end)
]])
  local code, log, took = H.run(d, { "--out", d .. "/out", "--timeout", "2", rb }, 30)
  T.eq(code, 4, log)
  T.ok(took < 8, string.format("ended %.1f s after start", took))
  local pid = tonumber(fs.read(d .. "/child.pid") or "")
  T.ok(pid, "the child wrote its pid")
  T.ok(pid and not proc.alive(pid), "the child is gone")
  outputs_written(d .. "/out")
  H.cleanup(d)
end)
