-- kmsrun.http against kmsrun.lib.http_server in the same process (loopback, port 0),
-- with certificates made by kmsrun.crypto. Behaviours these servers cannot
-- produce (repeated headers, chunked bodies, Unix sockets, a listener that
-- never accepts) are covered by tests/unit/test_http_client.c.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local server = require "kmsrun.lib.http_server"
local crypto = require "kmsrun.crypto"
local cjson = require "cjson"

-- ---- certificates ----------------------------------------------------------

local function issue(cn, issuer, opts)
  local key = crypto.keygen()
  local o = { key = key, subject = { CN = cn }, days = 2 }
  for k, v in pairs(opts or {}) do o[k] = v end
  if issuer then o.issuer_cert, o.issuer_key = issuer.cert, issuer.key end
  return { cert = assert(crypto.cert(o)), key = key }
end

local CA = { ca = true, key_usage = { "keyCertSign", "cRLSign" } }
local root1 = issue("test-root-1", nil, CA)
local root2 = issue("test-root-2", nil, CA)
local intermediate = issue("test-intermediate", root1, CA)
local leaf = issue("test-server", intermediate, { san = { "DNS:localhost" } })
local client = issue("test-client", root1)
local stranger = issue("other-client", root2)

local function fingerprint(pem) return crypto.parse_cert(pem).fingerprint end

-- ---- servers ---------------------------------------------------------------

local function handler(req)
  local status = req.path:match("^/status/(%d+)$")
  if status then return tonumber(status), "error body " .. status, { ["Content-Type"] = "text/plain" } end
  local n = req.path:match("^/big/(%d+)$")
  if n then return 200, string.rep("x", tonumber(n)) end
  if req.path == "/raw" then return 200, req.body end
  local s = req.path:match("^/sleep/([%d.]+)$")
  if s then time.sleep(tonumber(s)) end
  local who = req.peer_cert and crypto.parse_cert(req.peer_cert).subject_fields.CN or "none"
  return 200, cjson.encode({ method = req.method, path = req.path, query = req.query, headers = req.headers,
    body = req.body, client = who }), { ["Content-Type"] = "application/json", ["X-Server"] = "test" }
end

local plain = assert(server.listen(handler, { port = 0 }))
local tls = assert(server.listen(handler, {
  port = 0,
  tls = { cert = leaf.cert .. intermediate.cert, key = leaf.key, client_ca = root1.cert },
}))

local BASE = "http://127.0.0.1:" .. plain.port
local TLS_BASE = "https://localhost:" .. tls.port -- the name in the server certificate

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
  T.eq(res.headers["x-server"], "test")
  T.eq(res.http_version, "1.1")
  T.ok(res.time >= 0 and res.time < 5, "time is seconds")
  T.eq(res.certs, nil, "no certificates over plain http")
  local e = echo(res)
  T.eq(e.method, "GET")
  T.eq(e.path, "/hello")
  T.eq(e.query, "x=1")
  T.eq(e.headers["x-test"], "yes")
  T.eq(e.headers["x-num"], "42")
end)

T.test("POST sends the body as is, no content type added", function()
  local body = "line1\n\0binary\255"
  T.eq(request(BASE .. "/raw", { method = "POST", body = body }).body, body, "bytes round trip")
  local e = echo(request(BASE .. "/post", { method = "POST", body = body }))
  T.eq(e.method, "POST")
  T.eq(e.headers["content-length"], tostring(#body))
  T.eq(e.headers["content-type"], nil)
  T.eq(e.headers.expect, nil)
  e = echo(request(BASE .. "/put", { method = "PUT", body = "{}", headers = { ["Content-Type"] = "application/json" } }))
  T.eq(e.method, "PUT")
  T.eq(e.body, "{}")
  T.eq(e.headers["content-type"], "application/json")
end)

T.test("any verb; POST without body sends an empty one; HEAD has no body", function()
  T.eq(echo(request(BASE .. "/x", { method = "DELETE" })).method, "DELETE")
  T.eq(echo(request(BASE .. "/x", { method = "POST" })).headers["content-length"], "0")
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

T.test("keep-alive: the second request reuses the connection", function()
  T.eq(request(BASE .. "/ka", { fresh = true }).reused, false, "fresh forces a new connection")
  T.eq(request(BASE .. "/ka").reused, true)
  T.eq(request(BASE .. "/ka", { fresh = true }).reused, false)
end)

T.test("50 concurrent requests all succeed", function()
  local fns = {}
  for i = 1, 50 do
    fns[i] = function() return echo(request(BASE .. "/sleep/0.1?i=" .. i, { fresh = i % 2 == 0 })).query end
  end
  local started = time.now()
  local queries = { task.parallel(table.unpack(fns)) }
  T.eq(#queries, 50)
  for i = 1, 50 do T.eq(queries[i], "i=" .. i) end
  T.ok(time.now() - started < 2.5, "requests ran concurrently")
end)

-- ---- failures --------------------------------------------------------------

T.test("connection refused", function()
  local gone = assert(server.listen(handler, { port = 0 }))
  local url = gone:url("/")
  gone:close()
  local res, err, code = http.request(url)
  T.eq(res, nil)
  T.eq(code, "ECONNREFUSED")
  T.eq(err, "http.request: connection refused: " .. url)
end)

T.test("timeout when the server does not answer in time", function()
  local url = BASE .. "/sleep/3"
  local started = time.now()
  local res, err, code = http.request(url, { timeout = 0.3 })
  T.eq(res, nil)
  T.eq(code, "ETIMEDOUT")
  T.eq(err, "http.request: timed out after 0.3 s: " .. url)
  T.ok(time.now() - started < 2, "gave up in time")
end)

T.test("a connection closed without a reply is ECONNRESET", function()
  local doomed = assert(server.listen(handler, { port = 0 }))
  task.spawn(function() time.sleep(0.1); doomed:close() end)
  local res, err, code = http.request(doomed:url("/sleep/2"))
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
  T.eq(#request(BASE .. "/big/3000000").body, 3000000, "the default is larger")
end)

-- ---- misuse ----------------------------------------------------------------

T.test("misuse raises", function()
  T.raises(function() http.request(42) end, "http.request: url must be a string, got number")
  T.raises(function() http.request("localhost:80") end,
    "http.request: unsupported url 'localhost:80': it must start with http:// or https://")
  T.raises(function() http.request("ftp://127.0.0.1/") end, "http.request: unsupported url 'ftp:")
  T.raises(function() http.request("http://a b/") end, "http.request: invalid url")
  T.raises(function() http.request(BASE, "GET") end, "http.request: options must be a table")
  T.raises(function() http.request(BASE, { timout = 1 }) end,
    "http.request: unknown option 'timout' %(did you mean 'timeout'%?%)")
  T.raises(function() http.request(BASE, { timeout = "1" }) end, "option 'timeout' must be a number, got string")
  T.raises(function() http.request(BASE, { timeout = 0 }) end, "option 'timeout' must be > 0")
  T.raises(function() http.request(BASE, { method = "GE T" }) end, "method must be an HTTP token")
  T.raises(function() http.request(BASE, { headers = { ["X-A"] = "a\r\nX-B: b" } }) end, "line breaks")
  T.raises(function() http.request(BASE, { headers = { ["X A"] = "a" } }) end, "header names")
  T.raises(function() http.request(BASE, { headers = { ["X-A"] = true } }) end, "header 'X%-A' must be a string")
  T.raises(function() http.request(BASE, { max_body = -1 }) end, "max_body")
  T.raises(function() http.request(BASE, { fresh = 1 }) end, "option 'fresh' must be a boolean")
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
  local t = task.spawn(function() return http.request(BASE .. "/sleep/5") end)
  time.sleep(0.05)
  T.eq(t:waiting(), "http.request GET " .. BASE .. "/sleep/5")
  t:cancel()
  T.cancelled(function() t:join() end)
  -- parallel cancels a sibling's request when another fails
  T.raises(function()
    task.parallel(function() return http.request(BASE .. "/sleep/5") end,
      function() time.sleep(0.05); error("boom") end)
  end, "boom")
  T.eq(request(BASE .. "/after").status, 200, "the client still works")
end)

T.test("a request still in flight at exit is released", function()
  -- Never joined: the loop shutdown cancels it (ASan checks that nothing leaks).
  task.spawn(function() http.request(BASE .. "/sleep/30") end)
  time.sleep(0.02)
end)

-- ---- TLS -------------------------------------------------------------------

T.test("https with a pinned CA; the chain as presented", function()
  local res = request(TLS_BASE .. "/tls", { tls = { ca = root1.cert }, fresh = true })
  T.eq(res.status, 200)
  T.eq(echo(res).client, "none")
  T.eq(#res.certs, 2, "leaf and intermediate")
  T.eq(fingerprint(res.certs[1]), fingerprint(leaf.cert))
  T.eq(fingerprint(res.certs[2]), fingerprint(intermediate.cert))
  local again = request(TLS_BASE .. "/tls", { tls = { ca = root1.cert } })
  T.eq(again.reused, true)
  T.eq(again.certs, res.certs, "certs also on a reused connection")
end)

T.test("https against an unrelated CA fails with ETLS", function()
  local res, err, code = http.request(TLS_BASE .. "/", { tls = { ca = root2.cert } })
  T.eq(res, nil)
  T.eq(code, "ETLS")
  T.contains(err, "http.request: tls failure")
  T.contains(err, "certificate")
  -- nor does the system trust store know the test CA
  res, err, code = http.request(TLS_BASE .. "/")
  T.eq(code, "ETLS", err)
end)

T.test("insecure and verify_host", function()
  T.eq(request(TLS_BASE .. "/", { tls = { insecure = true } }).status, 200)
  -- the certificate names localhost, not 127.0.0.1
  local url = "https://127.0.0.1:" .. tls.port .. "/"
  local res, err, code = http.request(url, { tls = { ca = root1.cert } })
  T.eq(res, nil)
  T.eq(code, "ETLS", err)
  T.contains(err, "target host name")
  T.eq(request(url, { tls = { ca = root1.cert, verify_host = false } }).status, 200)
  -- verify_host = false still verifies the chain
  res, err, code = http.request(url, { tls = { ca = root2.cert, verify_host = false } })
  T.eq(code, "ETLS", err)
end)

T.test("mTLS: the server sees the client certificate", function()
  local res = request(TLS_BASE .. "/whoami", { tls = { ca = root1.cert, cert = client.cert, key = client.key } })
  T.eq(echo(res).client, "test-client")
end)

T.test("mTLS: connections are not shared between client identities", function()
  local anon = request(TLS_BASE .. "/a", { tls = { ca = root1.cert }, fresh = true })
  T.eq(echo(anon).client, "none")
  local with = request(TLS_BASE .. "/b", { tls = { ca = root1.cert, cert = client.cert, key = client.key } })
  T.eq(echo(with).client, "test-client", "the connection without a certificate was not reused")
  local again = request(TLS_BASE .. "/c", { tls = { ca = root1.cert, cert = client.cert, key = client.key } })
  T.eq(echo(again).client, "test-client")
  T.eq(again.reused, true, "the same identity reuses its connection")
  local anon2 = request(TLS_BASE .. "/d", { tls = { ca = root1.cert } })
  T.eq(echo(anon2).client, "none", "the mTLS connection was not reused without a certificate")
  T.eq(anon2.reused, true, "the anonymous connection is reused")
  -- a certificate the server does not accept: never served over another identity's connection
  local res, err, code = http.request(TLS_BASE .. "/e",
    { tls = { ca = root1.cert, cert = stranger.cert, key = stranger.key } })
  T.eq(res, nil)
  T.eq(code, "ETLS", err)
  -- the alert is read or, with TLS 1.3, lost when the server closes the connection
  T.ok(err:find("alert", 1, true) or err:find("rejected the client certificate", 1, true), err)
end)

-- ---- teardown --------------------------------------------------------------

T.test("teardown", function()
  plain:close()
  tls:close()
end)
