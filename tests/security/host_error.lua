-- tests/security/test_terminal.lua: a secret inside an error the host itself writes
-- (runtime/l_httpd.c: "httpd on_request failed: ..."), not the Lua side.
local httpd = require "kmsrun.httpd"
local http = require "kmsrun.http"
local redact = require "kmsrun.report.redact"
local secret = arg[1]
redact.add(secret)
local srv = assert(httpd.listen({ host = "127.0.0.1", port = 0 }, function() error("boom " .. secret, 0) end))
http.request(string.format("http://127.0.0.1:%d/", srv.port), { timeout = 5 })
io.stdout:write("done\n")
