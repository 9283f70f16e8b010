-- A misbehaving HTTP server for the fault matrix (tests/e2e/test_faults.sh):
--
--   kmsrun script tests/faults/fault_server.lua MODE [--boot-only] [--leak-to FILE]
--
-- --boot-only: GET requests get a well-behaved auth-simple answer (what a KMS asks
-- while it is only being probed), the fault hits the POST /bootAuth/... calls.
-- Prints "listening on http://127.0.0.1:PORT" (a free port) and answers every
-- request the way MODE says, until SIGTERM/SIGINT. It stands in for an auth
-- webhook (the KMS emulator asks it) or for a KMS (a runbook's rpc asks it).
-- Modes:
--   status500    HTTP 500, plain-text body
--   badjson      HTTP 200, truncated JSON
--   wrongtypes   HTTP 200, JSON with the wrong types ({"isAllowed":"yes",...})
--   hang         never answers (the connection stays open)
--   huge         HTTP 200, a 20 MiB JSON body (beyond http.request's default max_body)
--   garbage      HTTP 200, binary bytes that are neither JSON nor UTF-8
--   deep         HTTP 200, JSON nested 100000 levels deep
--   deep900      HTTP 200, JSON nested 900 levels deep (decodable)
--   number       HTTP 200, the JSON number 42
--   string       HTTP 200, the JSON string "hello"
--   array        HTTP 200, a JSON array
--   null         HTTP 200, JSON null
--   empty        HTTP 200, empty body
--   errortype    HTTP 400, {"error": {"nested": [1, 2]}} (error of the wrong type)
--   order        HTTP 200, {"__order": 5, ...} (a key the JSON encoder treats specially)
--   metatable    HTTP 200, {"__index": ..., "__jsontype": "array", "__tostring": 1}
--   pemleak      HTTP 200, a private-key PEM in an unexpected field (written to --leak-to FILE)
--   pemerror     HTTP 500, a private-key PEM in a plain-text error body (written to --leak-to FILE)
local server = require "kmsrun.lib.http_server"
local core = require "kmsrun.core"
local time = require "kmsrun.time"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"

local args = { ... }
local mode = args[1]
local leak_to, boot_only
for i = 2, #args do
  if args[i] == "--leak-to" then leak_to = args[i + 1] end
  if args[i] == "--boot-only" then boot_only = true end
end

local function pem()
  -- A fresh private key in PEM: exactly what redaction must catch.
  return crypto.keygen()
end

local JSON = { ["Content-Type"] = "application/json" }
local TEXT = { ["Content-Type"] = "text/plain" }

local huge
local modes = {
  status500 = function() return 500, "Internal Server Error: the fault server fails on purpose", TEXT end,
  badjson = function() return 200, '{"isAllowed": true, "reason": "trunc', JSON end,
  wrongtypes = function() return 200, '{"isAllowed":"yes","reason":1,"gatewayAppId":null,"device_id":[],"mr_aggregated":{}}', JSON end,
  hang = function() time.sleep(600) return 200, "{}", JSON end,
  huge = function()
    huge = huge or ('{"device_id":"' .. string.rep("a", 20 * 1024 * 1024) .. '"}')
    return 200, huge, JSON
  end,
  garbage = function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char((i * 37 + 11) % 256) end
    return 200, "\255\254\0garbage " .. table.concat(bytes) .. " \192\128", JSON
  end,
  deep = function() return 200, string.rep("[", 100000) .. string.rep("]", 100000), JSON end,
  deep900 = function() return 200, string.rep('{"a":', 900) .. "1" .. string.rep("}", 900), JSON end,
  number = function() return 200, "42", JSON end,
  string = function() return 200, '"hello"', JSON end,
  array = function() return 200, '[1, "two", {"three": 3}]', JSON end,
  null = function() return 200, "null", JSON end,
  empty = function() return 200, "", JSON end,
  errortype = function() return 400, '{"error": {"nested": [1, 2]}}', JSON end,
  order = function() return 200, '{"__order": 5, "device_id": "d", "x": {"__order": ["x", "y"], "y": 1}}', JSON end,
  metatable = function() return 200, '{"__index": {"a": 1}, "__jsontype": "array", "__tostring": 1, "__kind": "response", "device_id": "d"}', JSON end,
  pemleak = function()
    local key = pem()
    if leak_to then fs.append(leak_to, key) end
    return 200, '{"device_id": "d", "notes": {"debug": ' .. require("kmsrun.lib.json").quote(key) .. "}}", JSON
  end,
  pemerror = function()
    local key = pem()
    if leak_to then fs.append(leak_to, key) end
    return 500, "panic while handling the request; key material follows\n" .. key, TEXT
  end,
}

local handler = modes[mode]
if not handler then
  local names = {}
  for k in pairs(modes) do names[#names + 1] = k end
  table.sort(names)
  io.stderr:write("usage: kmsrun script fault_server.lua MODE [--boot-only] [--leak-to FILE]; modes: ", table.concat(names, " "), "\n")
  return 2
end

local policy = require "kmsrun.emu.auth.policy"
local srv = assert(server.listen(function(req)
  if boot_only and req.method ~= "POST" then return policy.handle(req, function() return policy.defaults() end) end
  return handler(req)
end, { host = "127.0.0.1", port = 0 }))
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()
local stop = false
core.on_signal(function() stop = true end)
for _ = 1, 6000 do -- at most 10 minutes
  if stop then break end
  time.sleep(0.1)
end
srv:close()
return 0
