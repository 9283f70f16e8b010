-- Write failures (issue 12, point 6), the repro as the test: files that cannot be
-- written (RLIMIT_FSIZE stands in for a full disk: the same failed write, EFBIG
-- instead of ENOSPC, without root or a small filesystem). The console never
-- claims a report it did not write, the run fails, and the cause is named; a
-- TMPDIR that cannot hold an emulator's files is named at deploy, not as "did not
-- listen" 15 s later; --events to /dev/full reports the loss.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

-- kmsrun ARGS under `ulimit -f 4` (2 to 4 KiB files), SIGXFSZ ignored so a write
-- past the limit fails instead of killing the process.
local function limited(dir, args)
  local sh = { "sh", "-c", 'trap "" XFSZ; ulimit -f 4 && exec "$@"', "sh" }
  local out, err = dir .. "/l.out", dir .. "/l.err"
  local argv = {}
  for _, a in ipairs(sh) do argv[#argv + 1] = a end
  argv[#argv + 1] = proc.exe()
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p <close> = assert(proc.spawn(argv, { stdout = out, stderr = err, cwd = dir }))
  local code = p:wait(120)
  return { code = code, stdout = fs.read(out) or "", stderr = fs.read(err) or "" }
end

T.test("a report that cannot be written is not claimed, and the run fails naming the cause", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/big.lua", 'runbook { description = "a big report" }\n'
    .. 'case("logs a lot", function() log("%s", string.rep("x", 20000)) end)\n'))
  -- -q: the terminal (a file here, under the same limit) stays small.
  local r = limited(dir, { dir .. "/big.lua", "-q", "--out", dir .. "/out" })
  T.ok(not r.stdout:find("report: " .. dir .. "/out/report.json", 1, true), "no claim of report.json:\n" .. r.stdout)
  T.contains(r.stdout, "report: NOT written")
  T.contains(r.stderr, "cannot write the report")
  T.contains(r.stderr, "File too large")
  T.eq(r.code, 3, "an infrastructure failure, not a pass")
  fs.remove(dir)
end)

T.test("a TMPDIR that cannot hold the emulator's files is named at deploy", function()
  local dir = kit.tmpdir()
  local r = limited(dir, { kit.here .. "/../faults/mini.lua", "--out", dir .. "/out" })
  T.contains(r.stdout, "cannot write in the work directory")
  T.ok(not r.stdout:find("did not listen", 1, true), "not 'did not listen'")
  T.ok(r.code ~= 0, "the run fails")
  fs.remove(dir)
end)

T.test("--events /dev/full: the loss is reported once and the run fails", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/one.lua", 'runbook { description = "one" }\ncase("one", function() log("x") end)\n'))
  local before = fs.stat("/dev/full")
  local r = kit.kmsrun(dir, { dir .. "/one.lua", "--out", dir .. "/out", "--events", "/dev/full" })
  local _, n = r.stderr:gsub("cannot write the events stream", "")
  T.eq(n, 1, "said once: " .. r.stderr)
  T.contains(r.stderr, "No space left on device")
  T.eq(r.code, 3, "a run whose event stream is incomplete fails")
  T.eq(fs.stat("/dev/full").mode, before.mode, "the device's mode is untouched")
  fs.remove(dir)
end)

T.test("an output directory that cannot be written is refused at once, naming the cause", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/one.lua", 'runbook { description = "one" }\ncase("one", function() log("x") end)\n'))
  -- Only kmsrun is limited (no file may grow past 0 bytes); its output goes through a
  -- pipe to cat, which writes the captured file unlimited.
  local p <close> = assert(proc.spawn({ "sh", "-c",
    'trap "" XFSZ; { (ulimit -f 0 && exec "$@") 2>&1; echo $? >&3; } 3>"$STATUS" | cat', "sh",
    proc.exe(), dir .. "/one.lua", "--out", dir .. "/out" },
    { stdout = dir .. "/l.out", cwd = dir, env = { STATUS = dir .. "/status" } }))
  p:wait(60)
  local out = fs.read(dir .. "/l.out") or ""
  T.eq(tonumber((fs.read(dir .. "/status") or ""):match("%d+")), 2, out)
  T.contains(out, "cannot create the output directory: cannot write in " .. dir .. "/out")
  T.contains(out, "File too large")
  T.ok(not out:find("cannot execute", 1, true), out)
  fs.remove(dir)
end)
