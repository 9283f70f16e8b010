-- Host ports for instances that must be told their port up front (a VMM port
-- forward, a real dstack-kms's kms.toml): ask the kernel for a free one by
-- binding port 0, close, hand it out. Another process can take it in between;
-- callers retry on "address in use" rather than pretend the race away.
local server = require "kmsrun.lib.http_server"

local M = {}

local handed_out = {} -- ports given out by this process, so parallel deploys never share one

--- A free TCP port on host (default 127.0.0.1), or nil, err, code.
function M.free(host)
  for _ = 1, 20 do
    local srv, err, code = server.listen(function() return 503 end, { host = host or "127.0.0.1", port = 0 })
    if not srv then return nil, "cannot find a free port: " .. tostring(err), code end
    local port = srv.port
    srv:close()
    if not handed_out[port] then
      handed_out[port] = true
      return port
    end
  end
  return nil, "cannot find a free port that was not already handed out", "EADDRINUSE"
end

--- Whether port can be listened on now (true) or nil, err, code (EADDRINUSE when taken).
function M.check(port, host)
  local srv, err, code = server.listen(function() return 503 end, { host = host or "127.0.0.1", port = port })
  if not srv then return nil, err, code end
  srv:close()
  return true
end

--- Parses "9301,9302" (a var) into a list of port numbers, or nil, err.
function M.parse_list(text, what)
  local list = {}
  for item in tostring(text or ""):gmatch("[^,%s]+") do
    local n = tonumber(item)
    if not n or n ~= math.floor(n) or n < 1 or n > 65535 then
      return nil, string.format("%s: '%s' is not a port number (1-65535)", what, item)
    end
    list[#list + 1] = math.tointeger(n)
  end
  return list
end

return M
