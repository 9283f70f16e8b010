-- The KMS container's own log, read from the CVM's guest agent. A real guest
-- does not copy container output to the serial console, so the VMM's /logs
-- shows the boot only. The guest agent serves GET /logs/<container> on its
-- external port 8090 when the app compose has public_logs
-- (dstack/guest-agent/src/http_routes.rs:20-24, 103 on main); the deploy forwards
-- it as upstream's deploy-to-vmm.sh does (dstack/kms/dstack-app/deploy-to-vmm.sh:145).
-- Errors come back in the body as {"error": ...} lines, with HTTP 200.
local http = require "kmsrun.http"
local json = require "kmsrun.lib.json"

local M = {}

M.PORT = 8090

--- The last `lines` lines of container `name`'s stdout and stderr (plain text), or nil, err.
function M.logs(base, name, opts)
  opts = opts or {}
  local url = string.format("%s/logs/%s?text=true&bare=true&timestamps=false&ansi=false&follow=false&tail=%d",
    base, name, opts.lines or 1000)
  local res, err = http.request(url, { timeout = opts.timeout or 5 })
  if not res then return nil, "cannot reach the guest agent at " .. base .. ": " .. tostring(err) end
  if res.status == 404 then return nil, "the guest agent at " .. base .. " serves no logs (public_logs off?)" end
  if res.status ~= 200 then return nil, string.format("guest agent logs: HTTP %d %s", res.status, res.body:sub(1, 200)) end
  local first = res.body:match("^%s*(%b{})%s*$")
  local decoded = first and json.decode(first)
  if type(decoded) == "table" and type(decoded.error) == "string" then
    return nil, "guest agent logs: " .. decoded.error
  end
  return res.body
end

--- Whether a container log shows a crash loop: the KMS (a Rust main returning
-- an error prints "Error: ...") failed at least `times` times; docker's
-- `restart: unless-stopped` keeps the earlier runs' output in the log.
-- Returns the last such line or nil.
function M.crash_loop(text, times)
  local n, last = 0, nil
  for line in tostring(text or ""):gmatch("[^\n]+") do
    if line:match("^Error: ") or line:match("panicked at") then n, last = n + 1, line end
  end
  if n >= (times or 2) then return last, n end
  return nil
end

return M
