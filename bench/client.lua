-- kmsrun side of bench/run: N sequential requests over keep-alive from a task.
-- Prints elapsed seconds and peak RSS (KiB).
local http = require "kmsrun.http"
local time = require "kmsrun.time"

local url, n = arg[1], tonumber(arg[2])
local opts = url:match("^https") and { tls = { insecure = true } } or {}
local started = time.now()
for i = 1, n do
  local res, err = http.request(url, opts)
  if not res or res.status ~= 200 then error("request " .. i .. " failed: " .. tostring(err)) end
end
local elapsed = time.now() - started
local status = io.open("/proc/self/status"):read("a")
print(string.format("%.6f %s", elapsed, status:match("VmHWM:%s*(%d+)")))
