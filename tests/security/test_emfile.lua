-- Out of file descriptors (issue 12, point 6), the repro as the test: a server
-- under `ulimit -n 24` gets 40 concurrent connections. It says so once (libevent
-- used to log every failed accept, retrying at once: 138 MB in 30 s), pauses
-- accepting, and serves every request as descriptors come back.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

T.test("EMFILE: one message, no flood, every request served in the end", function()
  local dir = kit.tmpdir()
  local p <close> = assert(proc.spawn({ "sh", "-c", 'ulimit -n 24 && exec "$0" script "$1"', proc.exe(), kit.here .. "/slow_server.lua" },
    { stdout = dir .. "/out", stderr = dir .. "/err" }))
  local url
  for _ = 1, 400 do
    url = (fs.read(dir .. "/out") or ""):match("listening on (%S+)")
    if url then break end
    time.sleep(0.05)
  end
  T.ok(url, "the server listens: " .. (fs.read(dir .. "/err") or ""))
  local results = {}
  local tasks = {}
  for i = 1, 40 do
    tasks[i] = task.spawn(function()
      local res, err = http.request(url .. "/x" .. i, { timeout = 40 })
      results[i] = res and res.status or err
    end)
  end
  for _, t in ipairs(tasks) do pcall(t.join, t) end
  local err = fs.read(dir .. "/err") or ""
  p:kill()
  T.ok(#err < 2048, "stderr is " .. #err .. " bytes")
  local _, n = err:gsub("cannot accept a connection", "")
  T.eq(n, 1, "said once: " .. err)
  T.contains(err, "Too many open files")
  local ok = 0
  for i = 1, 40 do if results[i] == 200 then ok = ok + 1 end end
  local why = {}
  for i = 1, 40 do if results[i] ~= 200 then why[#why + 1] = tostring(results[i]) end end
  T.eq(ok, 40, "every request served: " .. table.concat(why, "; "):sub(1, 600))
  fs.remove(dir)
end)
