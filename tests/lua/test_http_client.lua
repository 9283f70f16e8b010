-- kmsrun.http against local servers: a small Python server (HTTP, HTTPS with
-- an optional client certificate, a Unix socket) and certificates made with
-- the openssl CLI, all in a temporary directory, loopback only.
-- TODO: switch to kmsrun.server and crypto.cert once those modules exist.
local T = require "kmsrun.testing"
local task = require "kmsrun.task"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local cjson = require "cjson"

local SERVER_PY = [=[
import json, os, socket, socketserver, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, status, body, headers=()):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path
        if p.startswith("/status/"):
            code = int(p.split("/")[2])
            return self.reply(code, "error body %d" % code, [("Content-Type", "text/plain")])
        if p.startswith("/big/"):
            return self.reply(200, b"x" * int(p.split("/")[2]))
        if p == "/chunked-big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(64): self.wfile.write(b"10000\r\n" + b"y" * 65536 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError: pass
            return
        if p == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if p.startswith("/sleep/"):
            time.sleep(float(p.split("?")[0].split("/")[2]))
        if p == "/raw":
            return self.reply(200, body)
        if p == "/repeat":
            return self.reply(200, "r", [("X-Multi", "a"), ("X-Multi", "b")])
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            c = self.connection.getpeercert()
            if c: peer = dict(x[0] for x in c["subject"])["commonName"]
        info = {"method": self.command, "path": p, "body": body.decode("latin-1"), "client_cert": peer,
                "headers": {k.lower(): v for k, v in self.headers.items()}}
        self.reply(200, json.dumps(info), [("Content-Type", "application/json")])
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

class TLSServer(S):
    def __init__(self, addr, ctx):
        super().__init__(addr, H)
        self.ctx = ctx
    def get_request(self):
        s, a = self.socket.accept()
        return self.ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False), a
    def finish_request(self, request, client_address):
        try: request.do_handshake()
        except (ssl.SSLError, OSError): return
        super().finish_request(request, client_address)

class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

class UnixH(H):
    def address_string(self): return "unix"

def serve(srv): threading.Thread(target=srv.serve_forever, daemon=True).start()

d = sys.argv[1]
out = {"pid": os.getpid()}
plain = S(("127.0.0.1", 0), H); out["http"] = plain.server_address[1]; serve(plain)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "server-chain.pem"), os.path.join(d, "server.key"))
ctx.verify_mode = ssl.CERT_OPTIONAL
ctx.load_verify_locations(os.path.join(d, "ca1.pem"))
tls = TLSServer(("127.0.0.1", 0), ctx); out["https"] = tls.server_address[1]; serve(tls)
s = socket.socket(); s.bind(("127.0.0.1", 0)); out["refused"] = s.getsockname()[1]; s.close()
silent = socket.socket(); silent.bind(("127.0.0.1", 0)); silent.listen(64)  # never accepts
out["silent"] = silent.getsockname()[1]
out["unix"] = os.path.join(d, "http.sock")
serve(UnixServer(out["unix"], UnixH))
print(json.dumps(out), flush=True)
parent, started = os.getppid(), time.time()
while os.getppid() == parent and time.time() - started < 600: time.sleep(0.2)
os._exit(0)
]=]

local MKCERTS_SH = [=[
set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
root() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 2 -out "$1.pem" \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
# issue NAME CN ISSUER EXTENSIONS
issue() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
root ca1 test-root-1
root ca2 test-root-2
issue int test-intermediate ca1 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n'
issue server test-server int 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
issue client test-client ca1 'extendedKeyUsage=clientAuth\n'
issue other other-client ca2 'extendedKeyUsage=clientAuth\n'
cat server.pem int.pem > server-chain.pem
]=]

-- ---- fixture ---------------------------------------------------------------

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local tmp do
  local p = io.popen("mktemp -d")
  tmp = p:read("l")
  p:close()
end
write(tmp .. "/server.py", SERVER_PY)
write(tmp .. "/mkcerts.sh", MKCERTS_SH)
assert(os.execute("sh " .. sh_quote(tmp .. "/mkcerts.sh") .. " " .. sh_quote(tmp)), "certificate generation failed")
-- exec: the server is our direct child and exits when we do.
local server_proc = io.popen("exec python3 " .. sh_quote(tmp .. "/server.py") .. " " .. sh_quote(tmp), "r")
local ports = cjson.decode((assert(server_proc:read("l"), "test server did not start")))
for k, v in pairs(ports) do ports[k] = math.tointeger(v) or v end -- cjson decodes numbers as floats

local CA1, CA2 = read(tmp .. "/ca1.pem"), read(tmp .. "/ca2.pem")
local CLIENT = { cert = read(tmp .. "/client.pem"), key = read(tmp .. "/client.key") }
local OTHER = { cert = read(tmp .. "/other.pem"), key = read(tmp .. "/other.key") }
local SERVER_PEM, INT_PEM = read(tmp .. "/server.pem"), read(tmp .. "/int.pem")

local BASE = "http://127.0.0.1:" .. ports.http
local TLS_BASE = "https://127.0.0.1:" .. ports.https

local function request(url, opts)
  local res, err, code = http.request(url, opts)
  if not res then error(string.format("request failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return res
end

local function echo(res) return cjson.decode(res.body) end

-- ---- plain HTTP ------------------------------------------------------------

T.test("GET returns status, headers and body", function()
  local res = request(BASE .. "/hello?x=1", { headers = { ["X-Test"] = "yes", ["X-Num"] = 42 } })
  T.eq(res.status, 200)
  T.eq(res.headers["content-type"], "application/json")
  T.eq(res.http_version, "1.1")
  T.ok(res.time >= 0 and res.time < 5, "time is seconds")
  T.eq(res.certs, nil, "no certificates over plain http")
  local e = echo(res)
  T.eq(e.method, "GET")
  T.eq(e.path, "/hello?x=1")
  T.eq(e.headers["x-test"], "yes")
  T.eq(e.headers["x-num"], "42")
end)

T.test("POST sends the body as is, no content type added", function()
  local body = "line1\n\0binary\255"
  T.eq(request(BASE .. "/raw", { method = "POST", body = body }).body, body, "bytes round trip")
  local res = request(BASE .. "/post", { method = "POST", body = body })
  local e = echo(res)
  T.eq(e.method, "POST")
  T.eq(e.headers["content-length"], tostring(#body))
  T.eq(e.headers["content-type"], nil)
  T.eq(e.headers.expect, nil)
  local res2 = request(BASE .. "/post", { method = "PUT", body = "{}", headers = { ["Content-Type"] = "application/json" } })
  T.eq(echo(res2).headers["content-type"], "application/json")
  T.eq(echo(res2).method, "PUT")
end)

T.test("any verb; POST without body sends an empty one; HEAD has no body", function()
  T.eq(echo(request(BASE .. "/x", { method = "DELETE" })).method, "DELETE")
  local e = echo(request(BASE .. "/x", { method = "POST" }))
  T.eq(e.headers["content-length"], "0")
  local head = request(BASE .. "/x", { method = "HEAD" })
  T.eq(head.status, 200)
  T.eq(head.body, "")
end)

T.test("4xx and 5xx are responses with their body", function()
  local res = request(BASE .. "/status/404")
  T.eq(res.status, 404)
  T.eq(res.body, "error body 404")
  res = request(BASE .. "/status/400", { method = "POST", body = "bad" })
  T.eq(res.status, 400)
  T.eq(res.body, "error body 400")
  T.eq(request(BASE .. "/status/503").status, 503)
end)

T.test("repeated response headers are joined", function()
  T.eq(request(BASE .. "/repeat").headers["x-multi"], "a, b")
end)

T.test("keep-alive: the second request reuses the connection", function()
  local first = request(BASE .. "/ka", { fresh = true })
  T.eq(first.reused, false, "fresh forces a new connection")
  local second = request(BASE .. "/ka")
  T.eq(second.reused, true)
  T.eq(request(BASE .. "/ka", { fresh = true }).reused, false)
end)

T.test("over a unix socket", function()
  local res = request("http://localhost/over-unix", { unix_socket = ports.unix })
  T.eq(res.status, 200)
  T.eq(echo(res).path, "/over-unix")
  local r, err, code = http.request("http://localhost/", { unix_socket = tmp .. "/nothing.sock" })
  T.eq(r, nil)
  T.eq(code, "ECONNREFUSED", err)
end)

T.test("50 concurrent requests all succeed", function()
  local fns = {}
  for i = 1, 50 do
    fns[i] = function()
      local res = request(BASE .. "/sleep/0.05?i=" .. i, { fresh = i % 2 == 0 })
      return echo(res).path
    end
  end
  local started = time.now()
  local paths = { task.parallel(table.unpack(fns)) }
  T.eq(#paths, 50)
  for i = 1, 50 do T.eq(paths[i], "/sleep/0.05?i=" .. i) end
  T.ok(time.now() - started < 2.5, "requests ran concurrently")
end)

-- ---- failures --------------------------------------------------------------

T.test("connection refused", function()
  local url = "http://127.0.0.1:" .. ports.refused .. "/"
  local res, err, code = http.request(url)
  T.eq(res, nil)
  T.eq(code, "ECONNREFUSED")
  T.eq(err, "http.request: connection refused: " .. url)
end)

T.test("timeout against a server that never answers", function()
  local url = "http://127.0.0.1:" .. ports.silent .. "/"
  local started = time.now()
  local res, err, code = http.request(url, { timeout = 0.3 })
  T.eq(res, nil)
  T.eq(code, "ETIMEDOUT")
  T.eq(err, "http.request: timed out after 0.3 s: " .. url)
  T.ok(time.now() - started < 2, "gave up in time")
  -- A slow handler: connected, but no response within the limit.
  res, err, code = http.request(BASE .. "/sleep/2", { timeout = 0.2 })
  T.eq(code, "ETIMEDOUT")
  T.eq(err, "http.request: timed out after 0.2 s: " .. BASE .. "/sleep/2")
end)

T.test("empty reply is ECONNRESET", function()
  local res, err, code = http.request(BASE .. "/close")
  T.eq(res, nil)
  T.eq(code, "ECONNRESET", err)
end)

T.test("unresolvable host is ERESOLVE", function()
  local res, err, code = http.request("http://no-such-host.invalid/", { timeout = 5 })
  T.eq(res, nil)
  T.eq(code, "ERESOLVE", err)
end)

T.test("max_body bounds the response", function()
  T.eq(#request(BASE .. "/big/1000", { max_body = 1000 }).body, 1000)
  local res, err, code = http.request(BASE .. "/big/1001", { max_body = 1000 })
  T.eq(res, nil)
  T.eq(code, "ETOOBIG")
  T.contains(err, "larger than 1000 bytes")
  -- Without a length announced, the limit applies while reading.
  res, err, code = http.request(BASE .. "/chunked-big", { max_body = 100000 })
  T.eq(code, "ETOOBIG", err)
  T.eq(#request(BASE .. "/chunked-big").body, 64 * 65536)
end)

-- ---- misuse ----------------------------------------------------------------

T.test("misuse raises", function()
  T.raises(function() http.request(42) end, "http.request: url must be a string, got number")
  T.raises(function() http.request("localhost:80") end,
    "http.request: unsupported url 'localhost:80': it must start with http:// or https://")
  T.raises(function() http.request("ftp://127.0.0.1/") end, "http.request: unsupported url 'ftp:")
  T.raises(function() http.request("http://a b/") end, "http.request: invalid url")
  T.raises(function() http.request(BASE, { timout = 1 }) end,
    "http.request: unknown option 'timout' %(did you mean 'timeout'%?%)")
  T.raises(function() http.request(BASE, { timeout = "1" }) end, "option 'timeout' must be a number, got string")
  T.raises(function() http.request(BASE, { timeout = 0 }) end, "option 'timeout' must be > 0")
  T.raises(function() http.request(BASE, { method = "GE T" }) end, "method must be an HTTP token")
  T.raises(function() http.request(BASE, { headers = { ["X-A"] = "a\r\nX-B: b" } }) end, "line breaks")
  T.raises(function() http.request(BASE, { headers = { ["X A"] = "a" } }) end, "header names")
  T.raises(function() http.request(BASE, { max_body = -1 }) end, "max_body")
  T.raises(function() http.request(BASE, { tls = { cert = "x" } }) end, "tls.cert and tls.key must be given together")
  T.raises(function() http.request(BASE, { tls = { ca = 1 } }) end, "option 'tls.ca' must be a string")
  T.raises(function() http.request(BASE, { tls = { verify = false } }) end, "unknown option 'verify'")
end)

T.test("waiting outside a task is a clear error", function()
  local ok, err = coroutine.resume(coroutine.create(function() return http.request(BASE) end))
  T.eq(ok, false)
  T.match(err, "http.request: cannot wait outside a task")
end)

-- ---- cancellation ----------------------------------------------------------

T.test("cancelling a task waiting on a request aborts it", function()
  local t = task.spawn(function() return http.request("http://127.0.0.1:" .. ports.silent .. "/") end)
  time.sleep(0.05)
  T.match(t:waiting(), "^http.request GET http://127.0.0.1:")
  t:cancel()
  T.raises(function() t:join() end, "cancelled")
  -- and parallel cancels a sibling's request when another fails
  T.raises(function()
    task.parallel(function() return http.request(BASE .. "/sleep/5") end,
      function() time.sleep(0.05); error("boom") end)
  end, "boom")
end)

T.test("a request still in flight at exit is released", function()
  -- Never joined: the loop shutdown cancels it (ASan checks that nothing leaks).
  task.spawn(function() http.request("http://127.0.0.1:" .. ports.silent .. "/leftover") end)
  time.sleep(0.02)
end)

-- ---- TLS -------------------------------------------------------------------

T.test("https with a pinned CA, chain returned", function()
  local res = request(TLS_BASE .. "/tls", { tls = { ca = CA1 }, fresh = true })
  T.eq(res.status, 200)
  T.eq(echo(res).client_cert, cjson.null)
  T.eq(#res.certs, 2, "leaf and intermediate as presented")
  T.eq(res.certs[1], SERVER_PEM)
  T.eq(res.certs[2], INT_PEM)
  local again = request(TLS_BASE .. "/tls", { tls = { ca = CA1 } })
  T.eq(again.reused, true)
  T.eq(again.certs, res.certs, "certs also on a reused connection")
end)

T.test("https against an unrelated CA fails with ETLS", function()
  local res, err, code = http.request(TLS_BASE .. "/", { tls = { ca = CA2 } })
  T.eq(res, nil)
  T.eq(code, "ETLS")
  T.contains(err, "http.request: tls failure")
  T.match(err, "certificate")
  -- the system trust store does not know the test CA either
  res, err, code = http.request(TLS_BASE .. "/")
  T.eq(code, "ETLS", err)
end)

T.test("insecure and verify_host", function()
  T.eq(request(TLS_BASE .. "/", { tls = { insecure = true } }).status, 200)
  -- the certificate names 127.0.0.1 and localhost, not 127.0.0.2
  local url = "https://127.0.0.2:" .. ports.https .. "/"
  local res, err, code = http.request(url, { tls = { ca = CA1 } })
  if code == "ECONNREFUSED" then return end -- no 127.0.0.2 on this host
  T.eq(code, "ETLS", err)
  T.eq(request(url, { tls = { ca = CA1, verify_host = false } }).status, 200)
end)

T.test("mTLS: the server sees the client certificate", function()
  local res = request(TLS_BASE .. "/whoami", { tls = { ca = CA1, cert = CLIENT.cert, key = CLIENT.key } })
  T.eq(echo(res).client_cert, "test-client")
end)

T.test("mTLS: connections are not shared between client identities", function()
  local anon = request(TLS_BASE .. "/a", { tls = { ca = CA1 }, fresh = true })
  T.eq(echo(anon).client_cert, cjson.null)
  local with = request(TLS_BASE .. "/b", { tls = { ca = CA1, cert = CLIENT.cert, key = CLIENT.key } })
  T.eq(echo(with).client_cert, "test-client", "a cert-less connection was not reused")
  local again = request(TLS_BASE .. "/c", { tls = { ca = CA1, cert = CLIENT.cert, key = CLIENT.key } })
  T.eq(echo(again).client_cert, "test-client")
  T.eq(again.reused, true, "same identity reuses")
  local anon2 = request(TLS_BASE .. "/d", { tls = { ca = CA1 } })
  T.eq(echo(anon2).client_cert, cjson.null, "the mTLS connection was not reused without a cert")
  T.eq(anon2.reused, true, "the anonymous connection is reused")
  -- a client certificate from another CA: the server does not accept it
  local res, err, code = http.request(TLS_BASE .. "/e", { tls = { ca = CA1, cert = OTHER.cert, key = OTHER.key } })
  T.eq(res, nil, "not served over another identity's connection")
  T.eq(code, "ETLS", err)
  T.contains(err, "rejected the client certificate")
end)

-- ---- teardown --------------------------------------------------------------

T.test("teardown", function()
  os.execute("kill " .. ports.pid)
  server_proc:close()
  os.execute("rm -rf " .. sh_quote(tmp))
end)
