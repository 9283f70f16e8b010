-- HTTPS with client certificates, server and client in one kmsrun process:
-- kmsrun.lib.http_server serves, kmsrun.http connects, kmsrun.crypto makes the PKI.
local T = require "kmsrun.lib.testing"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local crypto = require "kmsrun.crypto"
local server = require "kmsrun.lib.http_server"

local function ca(cn)
  local key = crypto.keygen()
  return { key = key, cert = assert(crypto.cert { key = key, subject = { CN = cn }, ca = true }) }
end

local function issue(issuer, cn, san)
  local key = crypto.keygen()
  local cert = assert(crypto.cert {
    key = key, subject = { CN = cn }, san = san, issuer_cert = issuer.cert, issuer_key = issuer.key,
  })
  return { key = key, cert = cert }
end

local server_ca = ca("test server ca")
local client_ca = ca("test client ca")
local rogue_ca = ca("rogue ca")
local server_leaf = issue(server_ca, "test server", { "IP:127.0.0.1", "DNS:localhost" })
local rogue_leaf = issue(rogue_ca, "rogue server", { "IP:127.0.0.1", "DNS:localhost" })
local client = issue(client_ca, "runbook client")
local stranger = issue(rogue_ca, "stranger client")

local function cn_of(pem) return crypto.parse_cert(pem).subject_fields.CN end

local function listen(handler, tls)
  local srv, err, code = server.listen(handler, { tls = tls })
  if not srv then error(string.format("listen failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return srv
end

-- Who is calling, as the handler sees it.
local function whoami(req)
  return 200, req.peer_cert and cn_of(req.peer_cert) or "anonymous", { ["Content-Type"] = "text/plain" }
end

local MTLS = { cert = server_leaf.cert .. server_ca.cert, key = server_leaf.key, client_ca = client_ca.cert }

T.test("mutual TLS: the handler sees the client certificate", function()
  local peer
  local srv <close> = listen(function(req)
    peer = req.peer_cert
    return whoami(req)
  end, MTLS)
  local res, err, code = http.request(srv:url("/me"), {
    tls = { ca = server_ca.cert, cert = client.cert, key = client.key },
  })
  T.ok(res, tostring(err) .. " " .. tostring(code))
  T.eq(res.status, 200)
  T.eq(res.body, "runbook client")
  T.eq(crypto.parse_cert(peer).fingerprint, crypto.parse_cert(client.cert).fingerprint,
    "peer_cert is the certificate the client presented")
  T.eq(cn_of(res.certs[1]), "test server", "the client saw our leaf first")
  T.eq(#res.certs, 2, "leaf and chain as configured")
end)

T.test("client certificates are requested, not required", function()
  local srv <close> = listen(whoami, MTLS)
  local res = assert(http.request(srv:url(), { tls = { ca = server_ca.cert } }))
  T.eq(res.body, "anonymous")
end)

T.test("a client certificate from another CA fails the handshake", function()
  local calls = 0
  local srv <close> = listen(function(req)
    calls = calls + 1
    return whoami(req)
  end, MTLS)
  local res, err, code = http.request(srv:url(), {
    tls = { ca = server_ca.cert, cert = stranger.cert, key = stranger.key },
  })
  T.eq(res, nil, "refused")
  T.eq(code, "ETLS", err)
  T.eq(calls, 0, "the handler never ran")
end)

T.test("require_client_cert refuses a client without one", function()
  local srv <close> = listen(whoami, {
    cert = MTLS.cert, key = MTLS.key, client_ca = MTLS.client_ca, require_client_cert = true,
  })
  local res, err, code = http.request(srv:url(), { tls = { ca = server_ca.cert } })
  T.eq(res, nil, "refused")
  T.eq(code, "ETLS", err)
  local ok = assert(http.request(srv:url(), { tls = { ca = server_ca.cert, cert = client.cert, key = client.key } }))
  T.eq(ok.body, "runbook client")
end)

T.test("the client refuses a server whose certificate does not chain to the pinned CA", function()
  local calls = 0
  local rogue <close> = listen(function()
    calls = calls + 1
    return 200, "should not be reached"
  end, { cert = rogue_leaf.cert, key = rogue_leaf.key, client_ca = client_ca.cert })
  local res, err, code = http.request(rogue:url(), {
    tls = { ca = server_ca.cert, cert = client.cert, key = client.key },
  })
  T.eq(res, nil)
  T.eq(code, "ETLS", err)
  T.eq(calls, 0)
end)

T.test("a handler may make requests to another server of the same process", function()
  local back <close> = listen(function(req)
    time.sleep(0.05) -- the front handler really has to wait for us
    return 200, "back saw " .. (req.peer_cert and cn_of(req.peer_cert) or "anonymous")
  end, MTLS)
  local front <close> = listen(function(req)
    local res, err, code = http.request(back:url("/inner"), {
      tls = { ca = server_ca.cert, cert = client.cert, key = client.key },
    })
    if not res then error("inner request failed: " .. tostring(err) .. " " .. tostring(code)) end
    return 200, "front saw " .. cn_of(req.peer_cert) .. "; " .. res.body
  end, MTLS)
  local res = assert(http.request(front:url("/outer"), {
    tls = { ca = server_ca.cert, cert = client.cert, key = client.key }, timeout = 5,
  }))
  T.eq(res.status, 200)
  T.eq(res.body, "front saw runbook client; back saw runbook client")
end)
