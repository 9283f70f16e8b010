-- The dstack-vmm prpc client: addresses (http, https, unix:), Bearer and Basic
-- credentials (tainted for the redactor at once, never in messages), RPC errors,
-- 401, null results, logs.
local T = require "kmsrun.lib.testing"
local client = require "kmsrun.targets.vmm.client"
local server = require "kmsrun.lib.http_server"
local redact = require "kmsrun.report.redact"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local crypto = require "kmsrun.crypto"
local cjson = require "cjson.safe"

-- A VMM stand-in that records what it received.
local function fake(handler)
  local seen = {}
  local srv = assert(server.listen(function(req)
    seen[#seen + 1] = req
    return handler(req)
  end))
  return srv, seen
end

T.test("addresses: http, https, unix (relative made absolute); bad ones are explained", function()
  T.eq(client.parse_url("http://127.0.0.1:9080/").base, "http://127.0.0.1:9080")
  T.eq(client.parse_url("https://vmm.example:443").base, "https://vmm.example:443")
  local u = client.parse_url("unix:./vmm.sock")
  T.eq(u.unix_socket, fs.cwd() .. "/vmm.sock")
  T.eq(client.parse_url("unix:/run/vmm.sock").unix_socket, "/run/vmm.sock")
  local _, err = client.parse_url("")
  T.contains(err, "DSTACK_VMM_URL")
  _, err = client.parse_url("ftp://x")
  T.contains(err, "must start with http://, https:// or unix:")
  _, err = client.parse_url("http://user:pw@127.0.0.1:1")
  T.contains(err, "must not carry credentials")
  T.ok(not err:find("pw@", 1, true), "the credential is not echoed")
end)

T.test("bearer token: sent as Authorization, tainted for every sink", function()
  local token = "tok-" .. crypto.hex(crypto.random(8))
  local srv, seen = fake(function() return 200, '{"images":[]}' end)
  local c = assert(client.new(srv:url(), { token = token, user = "ignored-user", password = "ignored-password" }))
  T.eq(c:call("ListImages"), { images = {} })
  T.eq(seen[1].headers["authorization"], "Bearer " .. token, "a token wins over Basic")
  T.eq(seen[1].path, "/prpc/ListImages")
  T.eq(seen[1].query, "json")
  T.eq(seen[1].method, "POST")
  T.eq(seen[1].body, "{}")
  T.ok(not redact.scrub("x " .. token .. " y"):find(token, 1, true), "scrubbed")
  srv:close()
end)

T.test("Basic auth: user:password base64, all forms tainted; half a pair is an error", function()
  local user, password = "operator-" .. crypto.hex(crypto.random(4)), "pw-" .. crypto.hex(crypto.random(8))
  local srv, seen = fake(function() return 200, "null" end)
  local c = assert(client.new(srv:url(), { user = user, password = password }))
  T.eq(c:call("StopVm", { id = "x" }), true, "a null result is success")
  local b64 = seen[1].headers["authorization"]:match("^Basic (.+)$")
  T.eq(crypto.unbase64(b64), user .. ":" .. password)
  local scrubbed = redact.scrub(table.concat({ user, password, b64 }, " "))
  for _, s in ipairs({ user, password, b64 }) do T.ok(not scrubbed:find(s, 1, true), "scrubbed " .. s) end
  local _, err = client.new(srv:url(), { user = "only-a-user" })
  T.contains(err, "needs both a user and a password")
  srv:close()
end)

T.test("401: a clear message naming the variables, never the credential", function()
  local token = "wrong-" .. crypto.hex(crypto.random(8))
  local srv = fake(function() return 401, "", { ["WWW-Authenticate"] = 'Basic realm="x"' } end)
  local _, err, code = assert(client.new(srv:url(), { token = token })):call("Status")
  T.eq(code, "EAUTH")
  T.contains(err, "HTTP 401")
  T.contains(err, "bearer token (vmm_token / DSTACK_VMM_TOKEN) was not accepted")
  T.ok(not err:find(token, 1, true))
  _, err = assert(client.new(srv:url())):call("Status")
  T.contains(err, "DSTACK_VMM_TOKEN")
  srv:close()
end)

T.test("RPC errors come back as EVMM with the VMM's text; transport errors say where", function()
  local srv = fake(function() return 400, '{"error":"Failed to remove VM: VM not found"}' end)
  local c = assert(client.new(srv:url()))
  local res, err, code = c:call("RemoveVm", { id = "nope" })
  T.eq(res, nil)
  T.eq(code, "EVMM")
  T.eq(err, "VMM RemoveVm: Failed to remove VM: VM not found")
  srv:close()
  _, err, code = c:call("Status")
  T.eq(code, "ECONNREFUSED")
  T.contains(err, "cannot reach the VMM at " .. srv:url())
end)

T.test("logs: GET /logs with id, follow=false, ansi=false, lines", function()
  local srv, seen = fake(function(req)
    if req.path == "/logs" then return 200, "line 1\nline 2\n" end
    return 404, ""
  end)
  local c = assert(client.new(srv:url(), { token = "logs-token-123456" }))
  T.eq(c:logs("vm-1", { lines = 50 }), "line 1\nline 2\n")
  T.eq(seen[1].method, "GET")
  T.eq(seen[1].query, "id=vm-1&follow=false&ansi=false&lines=50")
  T.eq(seen[1].headers["authorization"], "Bearer logs-token-123456")
  srv:close()
end)

-- kmsrun.lib.http_server has no Unix sockets; a few lines of Python stand in for a VMM on one.
local UNIX_VMM = [[
import http.server, json, os, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.UnixStreamServer):
    def get_request(self):
        req, _ = super().get_request()
        return req, ("unix", 0)
path = sys.argv[1]
srv = S(path, H)
srv.serve_forever()
]]

T.test("unix: sockets carry the same prpc calls", function()
  local dir = assert(fs.tmpdir("vmm-client-test"))
  assert(fs.write(dir .. "/vmm.py", UNIX_VMM))
  local sock = dir .. "/vmm.sock"
  local p, err = proc.spawn({ "python3", dir .. "/vmm.py", sock }, { stderr = dir .. "/err" })
  if not p then
    fs.remove(dir)
    error("python3 is needed for this test: " .. tostring(err))
  end
  local deadline = time.now() + 10
  while not fs.exists(sock) and time.now() < deadline do time.sleep(0.02) end
  local c = assert(client.new("unix:" .. sock, { token = "unix-token-123456" }))
  T.eq(tostring(c), "VMM unix:" .. sock)
  local res, cerr = c:call("Status", {})
  p:kill(1)
  fs.remove(dir)
  T.ok(res, cerr)
  T.eq(res.path, "/prpc/Status?json")
  T.eq(res.auth, "Bearer unix-token-123456")
end)
