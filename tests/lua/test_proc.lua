local T = require "kmsrun.lib.testing"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"

local dir = fs.tmpdir("kmsrun-test-proc")

T.test("spawn an argv with env and cwd, output to a file, wait for the exit code", function()
  local out = dir .. "/out.txt"
  local p = assert(proc.spawn({ "sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3' },
    { env = { GREETING = "hello" }, cwd = dir, stdout = out, stderr = out }))
  T.match(tostring(p), "^process %d+ %(running%)$")
  local code, sig = p:wait()
  T.eq(code, 3)
  T.eq(sig, nil)
  T.eq(fs.read(out), "hello from " .. dir .. "\noops\n")
  T.match(tostring(p), "exited 3")
  T.eq((fs.stat(out)).mode, 384, "output file is owner-only")
end)

T.test("arguments are passed verbatim, never through a shell", function()
  local out = dir .. "/args.txt"
  local p = assert(proc.spawn({ "printf", "%s|", "a b", "$HOME", ";rm -rf /" }, { stdout = out }))
  T.eq(p:wait(), 0)
  T.eq(fs.read(out), "a b|$HOME|;rm -rf /|")
end)

T.test("a missing program is a clear error, not a crash", function()
  local p, err, code = proc.spawn({ "/nonexistent/kms-binary" })
  T.eq(p, nil)
  T.eq(code, "ENOENT")
  T.contains(err, "cannot execute '/nonexistent/kms-binary': No such file or directory")
end)

T.test("wait with a timeout returns ETIMEDOUT and leaves the process running", function()
  local p = assert(proc.spawn({ "sleep", "30" }))
  local ok, err, code = p:wait(0.05)
  T.eq(ok, nil)
  T.eq(code, "ETIMEDOUT")
  T.ok(p:running())
  T.eq(p:kill(0), 137)
  T.ok(not proc.alive(p.pid), "pid gone after kill")
end)

T.test("kill sends TERM, then KILL after the grace period", function()
  local p = assert(proc.spawn({ "sh", "-c", "trap '' TERM; sleep 30" }))
  time.sleep(0.05) -- let the shell install its trap
  local started = time.now()
  local code, sig = p:kill(0.2)
  T.eq({ code, sig }, { 137, "KILL" })
  T.ok(time.now() - started >= 0.2, "waited for the grace period first")
end)

T.test("several tasks may wait for the same process", function()
  local task = require "kmsrun.lib.task"
  local p = assert(proc.spawn({ "sleep", "0.05" }))
  local a, b = task.parallel(function() return p:wait() end, function() return p:wait() end)
  T.eq({ a, b }, { 0, 0 })
end)

T.test("a cancelled wait does not kill the process and leaks nothing", function()
  local task = require "kmsrun.lib.task"
  local p = assert(proc.spawn({ "sleep", "30" }))
  local t = task.spawn(function() return p:wait() end)
  time.sleep(0.01)
  T.match(t:waiting(), "proc.wait")
  t:cancel()
  T.cancelled(function() t:join() end)
  T.ok(p:running())
  p:kill(0)
end)

T.test("a process scoped with <close> is stopped at the end of the block", function()
  local pid
  do
    local p <close> = assert(proc.spawn({ "sleep", "30" }))
    pid = p.pid
  end
  T.ok(not proc.alive(pid))
end)

T.test("misuse raises with the function name", function()
  T.raises(function() proc.spawn("sleep 1") end, "bad argument #1 to 'spawn'")
  T.raises(function() proc.spawn({}) end, "spawn: argv must not be empty")
  T.raises(function() proc.spawn({ "true" }, { stdot = "x" }) end, "unknown option 'stdot' %(did you mean 'stdout'%?%)")
end)

T.test("exe names the running kmsrun", function()
  T.match(proc.exe(), "kmsrun")
end)
