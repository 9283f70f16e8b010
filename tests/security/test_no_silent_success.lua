-- No silent success (issue 12, point 6), the repro as the test: a run that selects
-- no case, or whose runbook is not a runbook file, ends with exit 2 and says why;
-- the harmless additions (a UTF-8 BOM, a #! line) are accepted.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

local ONE_CASE = 'runbook { description = "one case" }\ncase("passes", { tags = { "fast" } }, function() log("ran") end)\n'

local function write(dir, name, text)
  assert(fs.write(dir .. "/" .. name, text))
  return dir .. "/" .. name
end

T.test("zero selected cases: exit 2 with a message (empty runbook, /dev/null, --tag nosuchtag)", function()
  local dir = kit.tmpdir()
  local empty = write(dir, "empty.lua", 'runbook { description = "nothing" }\n')
  local one = write(dir, "one.lua", ONE_CASE)
  for _, c in ipairs({
    { { empty }, "the runbook declares no case" },
    { { one, "--tag", "nosuchtag" }, "no case has the tag nosuchtag (tags in the runbook: fast)" },
    { { "/dev/null" }, "/dev/null is not a regular file" },
  }) do
    local args = c[1]
    args[#args + 1] = "--out"
    args[#args + 1] = dir .. "/out"
    local r = kit.kmsrun(dir, args)
    T.eq(r.code, 2, table.concat(args, " "))
    T.contains(r.stderr, c[2])
    T.ok(not r.stdout:find("0 passed, 0 failed", 1, true), "no summary of nothing")
    fs.remove(dir .. "/out")
  end
  -- The same runbook with a matching tag runs: the failure above is the selection's.
  local r = kit.kmsrun(dir, { one, "--tag", "fast", "--out", dir .. "/out" })
  T.eq(r.code, 0, r.stderr)
  T.contains(r.stdout, "cases: 1 passed")
  fs.remove(dir)
end)

T.test("a directory, a device, a FIFO as runbook: exit 2 at once, for run, check and plan", function()
  local dir = kit.tmpdir()
  local fifo = dir .. "/fifo.lua"
  local mk <close> = assert(proc.spawn({ "mkfifo", fifo }))
  T.eq(mk:wait(10), 0, "mkfifo")
  for _, path in ipairs({ dir, "/dev/zero", fifo }) do
    for _, cmd in ipairs({ {}, { "check" }, { "plan" } }) do
      local args = {}
      for _, a in ipairs(cmd) do args[#args + 1] = a end
      args[#args + 1] = path
      local started = time.now()
      local r = kit.kmsrun(dir, args, { timeout = 20 })
      T.eq(r.code, 2, table.concat(args, " ") .. ": " .. r.stderr)
      T.ok(time.now() - started < 10, "no hang and no unbounded read")
      T.match(r.stderr, path == dir and "is a directory" or "is not a regular file", table.concat(args, " "))
    end
  end
  fs.remove(dir)
end)

T.test("a UTF-8 BOM and a #! line are accepted; line numbers stay right", function()
  local dir = kit.tmpdir()
  local bom = write(dir, "bom.lua", "\239\187\191" .. ONE_CASE)
  local shebang = write(dir, "shebang.lua", "#!/usr/bin/env kmsrun\n" .. ONE_CASE .. 'case("fails", function() error("at line four") end)\n')
  local r = kit.kmsrun(dir, { bom, "--out", dir .. "/o1" })
  T.eq(r.code, 0, r.stderr)
  r = kit.kmsrun(dir, { shebang, "--out", dir .. "/o2", "--keep-going" })
  T.eq(r.code, 2, r.stderr)
  T.contains(r.stdout, "shebang.lua:4: at line four")
  r = kit.kmsrun(dir, { "check", bom })
  T.eq(r.code, 0, r.stderr .. r.stdout)
  fs.remove(dir)
end)
