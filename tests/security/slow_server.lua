-- tests/security/test_emfile.lua: an HTTP server whose handler holds each request
-- for 0.5 s, so concurrent clients keep connections (file descriptors) open.
-- Prints "listening on URL"; stops by itself after 60 s.
local server = require "kmsrun.lib.http_server"
local time = require "kmsrun.time"
local srv = assert(server.listen(function()
  time.sleep(0.5)
  -- Closed after each answer: an idle keep-alive connection would hold its descriptor.
  return 200, "ok", { ["Content-Type"] = "text/plain", Connection = "close" }
end, { port = 0 }))
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()
time.sleep(60)
