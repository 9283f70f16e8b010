-- Issue 12, point 5: a declared runbook environment. Without host access a
-- runbook cannot start commands, open files, reach the Lua state or load any
-- module; `kmsrun check` reports such use and never runs it; with host access
-- (declared or --host-access) the same code runs.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local H = dofile(here .. "/harness.lua")

local USES = {
  { "os.execute", [[os.execute("touch MARK")]] },
  { "io.popen", [[io.popen("touch MARK")]] },
  { "io.open", [[io.open("MARK", "w")]] },
  { "debug.sethook", [[debug.sethook()]] },
  { "require 'kmsrun.fs'", [[require("kmsrun.fs").write("MARK", "x")]] },
  { "require 'os'", [[require("os").execute("touch MARK")]] },
  { "dofile", [[dofile("/dev/null")]] },
  { "os.remove", [[os.remove("MARK")]] },
}

local function rb(d, name, body, header)
  return H.runbook(d, name, string.format("runbook { description = 'uses the host'%s }\ncase('use', function() %s end)\n",
    header or "", body))
end

for _, u in ipairs(USES) do
  T.test(u[1] .. " without host access: exit 2, nothing done", function()
    local d = H.workdir("sb")
    local code, log = H.run(d, { "--out", d .. "/out", rb(d, "use", u[2]) })
    T.eq(code, 2, log)
    T.contains(log, u[1] .. " needs host access")
    T.ok(not fs.exists(d .. "/MARK"), "nothing was created")
    H.cleanup(d)
  end)
end

T.test("load of bytecode is refused; load of text gets the runbook's environment", function()
  local d = H.workdir("sbload")
  local code, log = H.run(d, { "--out", d .. "/out", rb(d, "load", [[
    local f, err = load(string.dump(function() end))
    assert(f == nil and err:find("binary"), "bytecode loaded: " .. tostring(err))
    local ok, e = pcall(load, string.dump(function() end), "x", "b")
    assert(not ok and tostring(e):find("needs host access"), tostring(e))
    local g = load("return io.popen")
    local ok2, e2 = pcall(g)
    assert(not ok2 and tostring(e2):find("needs host access"), "text chunk saw the host's io")
  ]]) })
  T.eq(code, 0, log)
  H.cleanup(d)
end)

T.test("os.exit is never available, even with host access", function()
  local d = H.workdir("sbexit")
  local code, log = H.run(d, { "--out", d .. "/out", rb(d, "exit", "os.exit(0)", ", host_access = true") })
  T.eq(code, 2, log)
  T.contains(log, "os.exit is not available")
  H.cleanup(d)
end)

T.test("runbook{host_access = true} or --host-access grants it", function()
  local d = H.workdir("sbgrant")
  local code, log = H.run(d, { "--out", d .. "/out1", rb(d, "declared", [[assert(os.execute("touch MARK1"))]], ", host_access = true") })
  T.eq(code, 0, log)
  T.ok(fs.exists(d .. "/MARK1"))
  code, log = H.run(d, { "--out", d .. "/out2", "--host-access", rb(d, "flag", [[assert(os.execute("touch MARK2"))]]) })
  T.eq(code, 0, log)
  T.ok(fs.exists(d .. "/MARK2"))
  H.cleanup(d)
end)

T.test("kmsrun check reports each host use and runs none of it", function()
  local d = H.workdir("sbcheck")
  local lines = { "runbook { description = 'uses the host' }" }
  for i, u in ipairs(USES) do lines[#lines + 1] = string.format("case('use %d', function() %s end)", i, u[2]) end
  lines[#lines + 1] = "case('exit', function() os.exit(3) end)"
  local path = H.runbook(d, "all", table.concat(lines, "\n") .. "\n")
  local code, log = H.run(d, { "check", path })
  T.eq(code, 2, log)
  for _, u in ipairs(USES) do T.contains(log, u[1] .. " needs host access") end
  T.contains(log, "os.exit is not available")
  code, log = H.run(d, { "check", "--host-access", path })
  T.eq(code, 2, log) -- os.exit still
  T.ok(not log:find("needs host access"), log)
  T.ok(not fs.exists(d .. "/MARK"), "check ran nothing, with host access either")
  H.cleanup(d)
end)
