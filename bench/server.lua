-- A loopback HTTP server for the benchmarks: answers every request with a small
-- JSON body. Prints "listening on URL" then serves until SIGTERM.
local server = require "kmsrun.lib.http_server"
local core = require "kmsrun.core"
local task = require "kmsrun.lib.task"
local crypto = require "kmsrun.crypto"

local tls
if arg[1] == "--tls" then
  local key = crypto.keygen()
  tls = { key = key, cert = assert(crypto.cert { key = key, subject = { CN = "bench" }, san = { "IP:127.0.0.1" } }) }
end
local body = '{"status":"ok","k256_pubkey":"' .. string.rep("ab", 33) .. '"}'
local srv = assert(server.listen(function() return 200, body, { ["Content-Type"] = "application/json" } end,
  { port = 0, tls = tls }))
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()
local me = task.current()
core.on_signal(function() me:cancel() end)
pcall(require("kmsrun.core").suspend, "serve")
srv:close()
