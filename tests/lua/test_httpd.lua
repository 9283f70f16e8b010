-- kmsrun.lib.http_server and kmsrun.httpd against kmsrun.http, loopback only, port 0.
-- Client certificates are covered by test_https_mtls.lua.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local httpd = require "kmsrun.httpd"
local server = require "kmsrun.lib.http_server"
local crypto = require "kmsrun.crypto"

local function request(url, opts)
  local res, err, code = http.request(url, opts)
  if not res then error(string.format("request failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return res
end

local function listen(handler, opts)
  local srv, err, code = server.listen(handler, opts)
  if not srv then error(string.format("listen failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return srv
end

-- ---- plain HTTP ------------------------------------------------------------

T.test("GET: the handler sees method, path, query, headers and peer", function()
  local seen
  local srv <close> = listen(function(req)
    seen = req
    return 200, "hello", { ["Content-Type"] = "text/plain", ["X-Answer"] = 42 }
  end)
  T.eq(srv.host, "127.0.0.1")
  T.ok(srv.port > 0, "a port was chosen")
  T.eq(srv:url(), "http://127.0.0.1:" .. srv.port)
  T.eq(srv:url("/x"), "http://127.0.0.1:" .. srv.port .. "/x")
  T.eq(tostring(srv), "server http://127.0.0.1:" .. srv.port .. " (listening)")

  local res = request(srv:url("/a/b?x=1&y=two"), { headers = { ["X-Test"] = "yes" } })
  T.eq(res.status, 200)
  T.eq(res.body, "hello")
  T.eq(res.headers["content-type"], "text/plain")
  T.eq(res.headers["x-answer"], "42")
  T.eq(res.headers["content-length"], "5")
  T.eq(seen.method, "GET")
  T.eq(seen.path, "/a/b")
  T.eq(seen.query, "x=1&y=two")
  T.eq(seen.headers["x-test"], "yes")
  T.eq(seen.headers.host, "127.0.0.1:" .. srv.port)
  T.eq(seen.body, "")
  T.eq(seen.peer_addr, "127.0.0.1")
  T.eq(math.type(seen.peer_port), "integer")
  T.eq(seen.tls, false)
  T.eq(seen.peer_cert, nil)
  T.eq(seen.responded, true)
end)

T.test("POST: body in, table-form answer out, keep-alive", function()
  local seen
  local srv <close> = listen(function(req)
    seen = req
    return { status = 201, body = "got " .. #req.body, headers = { Location = "/items/1" } }
  end)
  local body = "line1\n\0binary\255"
  local res = request(srv:url("/items"), { method = "POST", body = body, headers = { ["Content-Type"] = "x/y" } })
  T.eq(res.status, 201)
  T.eq(res.body, "got " .. #body)
  T.eq(res.headers.location, "/items/1")
  T.eq(seen.method, "POST")
  T.eq(seen.body, body)
  T.eq(seen.query, "", "no query")
  T.eq(seen.headers["content-type"], "x/y")
  local again = request(srv:url("/items"), { method = "PUT", body = "2" })
  T.eq(again.status, 201)
  T.eq(again.reused, true, "the connection was kept alive")
end)

T.test("a handler may answer itself with req:respond", function()
  local srv <close> = listen(function(req)
    req:respond(202, "myself", { ["X-Way"] = "respond" })
    T.raises(function() req:respond(200, "twice") end, "httpd.respond: the request was already answered")
  end)
  local res = request(srv:url())
  T.eq(res.status, 202)
  T.eq(res.body, "myself")
  T.eq(res.headers["x-way"], "respond")
end)

T.test("two slow handlers run concurrently (a task per request)", function()
  local running, most = 0, 0
  local srv <close> = listen(function(req)
    running = running + 1
    most = math.max(most, running)
    time.sleep(0.3)
    running = running - 1
    return 200, req.path
  end)
  local started = time.now()
  local a, b = task.parallel(
    function() return request(srv:url("/a"), { fresh = true }) end,
    function() return request(srv:url("/b"), { fresh = true }) end)
  local took = time.now() - started
  T.eq({ a.body, b.body }, { "/a", "/b" })
  T.eq(most, 2, "both handlers were running at once")
  T.ok(took < 0.55, "took " .. took .. " s, not 0.6")
end)

T.test("a handler that raises gives 500 and reports the error", function()
  local reported, reported_req
  local srv <close> = listen(function(req)
    if req.path == "/boom" then error("boom") end
    if req.path == "/nothing" then return end
    if req.path == "/badstatus" then return 99 end
    return 200, "fine"
  end, { on_error = function(err, req) reported, reported_req = err, req end })

  local res = request(srv:url("/boom"))
  T.eq(res.status, 500)
  T.eq(res.body, "internal server error")
  T.match(reported, "boom")
  T.eq(reported_req.path, "/boom")

  res = request(srv:url("/nothing"))
  T.eq(res.status, 500)
  T.match(reported, "returned no status")

  res = request(srv:url("/badstatus"))
  T.eq(res.status, 500)
  T.match(reported, "status must be an integer from 200 to 599, got 99")

  T.eq(request(srv:url("/ok")).body, "fine", "the server keeps serving")
end)

T.test("max_body: a larger body gets 413 without calling the handler", function()
  local calls = 0
  local srv <close> = listen(function(req)
    calls = calls + 1
    return 200, "n=" .. #req.body
  end, { max_body = 16 })
  T.eq(request(srv:url(), { method = "POST", body = string.rep("x", 16) }).body, "n=16")
  local res = request(srv:url(), { method = "POST", body = string.rep("x", 17), fresh = true })
  T.eq(res.status, 413)
  T.eq(calls, 1)
end)

T.test("a client that gives up while its handler waits does no harm", function()
  local answered
  local srv <close> = listen(function(req)
    if req.path == "/slow" then
      time.sleep(0.3)
      answered = true
      return 200, "too late"
    end
    return 200, "ok"
  end)
  local res, err, code = http.request(srv:url("/slow"), { timeout = 0.1, fresh = true })
  T.eq(res, nil, err)
  T.eq(code, "ETIMEDOUT")
  time.sleep(0.4)
  T.ok(answered, "the handler finished")
  T.eq(request(srv:url("/after"), { fresh = true }).body, "ok")
end)

T.test("closing while a handler waits: its answer goes nowhere", function()
  local done = false
  local srv = listen(function()
    time.sleep(0.2)
    done = true
    return 200, "late"
  end)
  local client = task.spawn(function() return http.request(srv:url(), { fresh = true }) end)
  time.sleep(0.05)
  srv:close()
  srv:close() -- idempotent
  T.eq(tostring(srv), "server " .. srv:url() .. " (closed)")
  local res, err, code = client:join()
  T.eq(res, nil, "no response")
  T.ok(code == "ECONNRESET" or code == "EHTTP", tostring(code) .. ": " .. tostring(err))
  time.sleep(0.25)
  T.ok(done, "the handler ran to the end")
end)

T.test("listen failures and misuse", function()
  local srv <close> = listen(function() return 200 end)
  local s2, err, code = server.listen(function() return 200 end, { port = srv.port })
  T.eq(s2, nil)
  T.eq(code, "EADDRINUSE")
  T.match(err, "^server%.listen: cannot listen on 127%.0%.0%.1:%d+: address already in use$")
  T.raises(function() server.listen("nope") end, "server.listen: handler must be a function, got string")
  T.raises(function() server.listen(function() end, { prot = 1 }) end,
    "server.listen: unknown option 'prot' %(did you mean 'port'%?%)")
  T.raises(function() server.listen(function() end, { port = 70000 }) end, "option 'port' must be an integer in %[0, 65535%]")
  T.raises(function() server.listen(function() end, { tls = { cert = "x" } }) end, "tls needs both cert and key")
  T.raises(function() httpd.listen({}, 42) end, "httpd.listen: on_request must be a function, got number")
  local _, e, c = server.listen(function() end, { tls = { cert = "junk", key = "junk" } })
  T.eq(c, "EINVAL")
  T.match(e, "^server%.listen: tls%.cert: ")
end)

-- ---- the low-level module --------------------------------------------------

T.test("httpd: on_request runs outside any task; a task may answer later", function()
  local held = {}
  local srv <close> = httpd.listen({}, function(req)
    T.eq(coroutine.isyieldable(), false)
    local ok, err = pcall(time.sleep, 0)
    held[#held + 1] = { req = req, wait_error = not ok and err }
  end)
  T.match(tostring(srv), "^httpd http://127%.0%.0%.1:%d+ %(listening%)$")
  local client = task.spawn(function() return request("http://127.0.0.1:" .. srv.port .. "/later") end)
  while #held == 0 do time.sleep(0.01) end
  T.match(held[1].wait_error, "cannot wait outside a task")
  local req = held[1].req
  T.match(tostring(req), "^request GET /later %(pending%)$")
  T.raises(function() req:respond(99) end, "httpd.respond: status must be an integer from 200 to 599")
  T.raises(function() req:respond(200, "", { ["Bad Name"] = "x" }) end, "httpd.respond: invalid header 'Bad Name'")
  T.raises(function() req:respond(200, "", { X = "a\r\nInjected: 1" }) end, "invalid header 'X'")
  T.eq(req:respond(200, "later", { ["X-Late"] = "yes" }), true)
  local res = client:join()
  T.eq(res.body, "later")
  T.eq(res.headers["x-late"], "yes")
  T.eq(res.headers.injected, nil)
end)

T.test("httpd: answering after close is a harmless no-op", function()
  local held
  local srv = httpd.listen({}, function(req) held = req end)
  local client = task.spawn(function() return http.request("http://127.0.0.1:" .. srv.port .. "/", { fresh = true }) end)
  while not held do time.sleep(0.01) end
  srv:close()
  T.eq(tostring(srv):match("%((%a+)%)$"), "closed")
  T.eq(srv.closed, true)
  T.eq(held:respond(200, "nobody listens"), false)
  T.eq(client:join(), nil)
end)

-- ---- TLS -------------------------------------------------------------------

local function make_certs()
  local ca_key, key = crypto.keygen(), crypto.keygen()
  local ca = assert(crypto.cert { key = ca_key, subject = { CN = "test ca" }, ca = true })
  local cert = assert(crypto.cert {
    key = key, subject = { CN = "test server" }, san = { "IP:127.0.0.1" }, issuer_cert = ca, issuer_key = ca_key,
  })
  return { ca = ca, cert = cert, key = key }
end

T.test("close, then listen again on the same port with TLS", function()
  local pki = make_certs()
  local plain = listen(function() return 200, "plain" end)
  local port = plain.port
  T.eq(request(plain:url()).body, "plain")
  plain:close()

  local secure <close> = listen(function(req)
    return 200, "secure tls=" .. tostring(req.tls)
  end, { port = port, tls = { cert = pki.cert, key = pki.key } })
  T.eq(secure.port, port)
  T.eq(secure:url(), "https://127.0.0.1:" .. port)
  T.eq(tostring(secure), "server https://127.0.0.1:" .. port .. " (listening)")
  local res = request(secure:url("/s"), { tls = { ca = pki.ca } })
  T.eq(res.body, "secure tls=true")
  T.eq(#res.certs, 1)
  local _, _, code = http.request("http://127.0.0.1:" .. port .. "/", { fresh = true, timeout = 2 })
  T.ok(code ~= nil, "plain HTTP to the TLS port fails")
end)
