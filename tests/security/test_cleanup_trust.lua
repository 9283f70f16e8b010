-- Issue 12, point 3: `kmsrun cleanup OUTDIR` acts only on what this user's run
-- created. Hand-written (hostile) ledgers: each entry is checked against the
-- world before it is undone, and nothing outside the run is touched.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local procinfo = require "kmsrun.lib.procinfo"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local H = dofile(here .. "/harness.lua")

local ME = procinfo.stat("self").pid

local function ledger(dir, lines, mode)
  fs.mkdir(dir, { mode = mode or 448 })
  fs.chmod(dir, mode or 448)
  local out = {}
  for _, l in ipairs(lines) do out[#out + 1] = json.encode(l) end
  assert(fs.write(dir .. "/ledger.ndjson", table.concat(out, "\n") .. "\n"))
end

local function reg(id, undo) return { action = "register", id = id, description = "entry " .. id, undo = undo, time = time.wall() } end
local function run_line() return { action = "run", pid = ME } end

local function sleeper()
  local p = assert(proc.spawn({ "sleep", "60" }))
  time.sleep(0.1)
  return p
end

T.test("a directory that is not 0700 or is a link is refused", function()
  local d = H.workdir("ctmode")
  local p = sleeper()
  local id = procinfo.identity(p.pid)
  ledger(d .. "/out", { run_line(), reg(1, { kind = "process", pid = p.pid, starttime = id.starttime,
    cmdline_sha256 = id.cmdline_sha256, ppid = ME }) }, 493)
  local code, log = H.run(d, { "cleanup", d .. "/out" })
  T.eq(code, 2, log)
  T.contains(log, "not 0700")
  os.execute("ln -s '" .. d .. "/out' '" .. d .. "/link'")
  code, log = H.run(d, { "cleanup", d .. "/link" })
  T.eq(code, 2, log)
  T.ok(proc.alive(p.pid), "the process was not touched")
  p:kill(0)
  H.cleanup(d)
end)

T.test("a pid is signalled only if start time, command line and parent match", function()
  local d = H.workdir("ctpid")
  local victim, ours = sleeper(), sleeper()
  local vid, oid = procinfo.identity(victim.pid), procinfo.identity(ours.pid)
  ledger(d .. "/out", { run_line(),
    reg(1, { kind = "process", pid = victim.pid }), -- no identity: an old or forged entry
    reg(2, { kind = "process", pid = victim.pid, starttime = vid.starttime + 1e6, cmdline_sha256 = vid.cmdline_sha256, ppid = ME }),
    reg(3, { kind = "process", pid = victim.pid, starttime = vid.starttime, cmdline_sha256 = string.rep("0", 64), ppid = ME }),
    reg(4, { kind = "process", pid = victim.pid, starttime = vid.starttime, cmdline_sha256 = vid.cmdline_sha256, ppid = ME + 1 }),
    reg(5, { kind = "process", pid = ours.pid, starttime = oid.starttime, cmdline_sha256 = oid.cmdline_sha256, ppid = ME }),
  })
  local code, log = H.run(d, { "cleanup", "--grace", "1", d .. "/out" })
  T.eq(code, 5, log)
  T.ok(proc.alive(victim.pid), "the process the ledger could not vouch for is alive")
  T.contains(log, "no start time")
  T.contains(log, "does not run the command line")
  T.contains(log, "not recorded as a child")
  T.contains(log, "started at another time")
  T.eq((ours:wait(10)), 143, "the run's own process got SIGTERM")
  victim:kill(0)
  H.cleanup(d)
end)

T.test("directories and files outside the run are left alone", function()
  local d = H.workdir("ctpaths")
  fs.mkdir(d .. "/precious")
  assert(fs.write(d .. "/precious/data", "keep"))
  assert(fs.write(d .. "/etc-file", "keep", { mode = 420 }))
  local tmpbase = d .. "/tmp"
  fs.mkdir(tmpbase .. "/kmsrun-work/x")
  fs.mkdir(tmpbase .. "/other")
  ledger(d .. "/out", { run_line(),
    reg(1, { kind = "dir", path = d .. "/precious" }),
    reg(2, { kind = "dir", path = tmpbase .. "/other" }),
    reg(3, { kind = "dir", path = tmpbase .. "/kmsrun-work/../other" }),
    reg(4, { kind = "file", path = d .. "/etc-file", content = "pwned", mode = 2541 }),
    reg(5, { kind = "dir", path = tmpbase .. "/kmsrun-work" }),
  })
  local code, log = H.run(d, { "cleanup", d .. "/out" }, 60)
  T.eq(code, 5, log)
  T.eq(fs.read(d .. "/precious/data"), "keep")
  T.ok(fs.exists(tmpbase .. "/other"))
  T.eq(fs.read(d .. "/etc-file"), "keep")
  T.eq(fs.stat(d .. "/etc-file").mode, 420)
  T.contains(log, "cannot check " .. d .. "/etc-file") -- no runbook recorded: no policy file can be vouched for
  -- With TMPDIR set to where the run made its work directory, that one goes.
  local p, plog = H.start(d, { "cleanup", d .. "/out" })
  p:wait(30)
  T.ok(fs.exists(tmpbase .. "/kmsrun-work"), "not in this environment's TMPDIR: kept (" .. (fs.read(plog) or "") .. ")")
  local argv = { "env", "TMPDIR=" .. tmpbase, H.exe, "cleanup", d .. "/out" }
  local q = assert(proc.spawn(argv, { stdout = d .. "/q.log", stderr = d .. "/q.log" }))
  q:wait(30)
  T.ok(not fs.exists(tmpbase .. "/kmsrun-work"), "the run's work directory is removed: " .. (fs.read(d .. "/q.log") or ""))
  H.cleanup(d)
end)

T.test("the VMM and its credentials come from cleanup's command line, never the ledger", function()
  local server = require "kmsrun.lib.http_server"
  local hits = 0
  local srv = assert(server.listen(function() hits = hits + 1 return 200, "{}" end, { port = 0 }))
  local d = H.workdir("ctvm")
  ledger(d .. "/out", { run_line(), reg(1, { kind = "vm", url = srv:url(), id = "vm-1" }) })
  local code, log = H.run(d, { "cleanup", d .. "/out" })
  T.eq(code, 5, log)
  T.contains(log, "--vmm-url")
  code, log = H.run(d, { "cleanup", "--vmm-url", "http://127.0.0.1:9", d .. "/out" })
  T.eq(code, 5, log)
  T.contains(log, "not on http://127.0.0.1:9")
  T.eq(hits, 0, "the URL the ledger names was never contacted")
  srv:close()
  H.cleanup(d)
end)

T.test("cleanup refuses while the run that wrote the ledger is alive (--force overrides)", function()
  local d = H.workdir("ctlive")
  local rb = H.runbook(d, "slow", [[
runbook { description = "slow" }
case("slow", function() save("x", "y") log("started") sleep(30) end)
]])
  local p, plog = H.start(d, { "--out", d .. "/out", rb })
  T.ok(H.wait_for(plog, "started"), "the run started")
  local code, log = H.run(d, { "cleanup", d .. "/out" })
  T.eq(code, 2, log)
  T.contains(log, "still running")
  T.ok(p:wait(0.2) == nil, "the run is untouched")
  -- Once it has registered something, --force acts under it (here a dry run).
  assert(fs.append(d .. "/out/ledger.ndjson", json.encode(run_line()) .. "\n"))
  code, log = H.run(d, { "cleanup", d .. "/out" })
  T.eq(code, 2, log)
  T.contains(log, "still running")
  code, log = H.run(d, { "cleanup", "--force", "--dry-run", d .. "/out" })
  T.eq(code, 0, log)
  T.contains(log, "--force")
  p:signal("INT")
  T.eq((p:wait(30)), 130)
  H.cleanup(d)
end)
