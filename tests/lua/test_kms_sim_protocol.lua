-- Protocol conformance of kms-sim (kmsrun's KMS EMULATOR) against kms-protocol.md:
-- request -> expected HTTP status and body / error string, endpoint by endpoint.
-- These tables describe the emulator; they say nothing about the real KMS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "lib/?.lua;" .. package.path

local T = require "kmsrun.lib.testing"
local F = require "kms_sim_fixture"
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local http = require "kmsrun.http"
local cjson = require "cjson.safe"
local PB = require "kmsrun.lib.protobuf"
local messages = require "kmsrun.kms.messages"
local A = require "kmsrun.emu.kms.attestation"

-- Runs one table row against instance h.
local function check(h, c)
  local label = c[1]
  local res = F.req(h, c.path, { method = c.method or "POST", body = c.body, headers = c.headers })
  T.eq(res.status, c.status, label .. ": status (" .. res.body:sub(1, 300) .. ")")
  if c.error then
    T.eq(res.json and res.json.error, c.error, label)
    T.eq(res.body, "{\n  \"error\": " .. cjson.encode(c.error):gsub("\\/", "/") .. "\n}", label .. ": pretty body")
  end
  if c.error_prefix then
    T.ok(res.json and type(res.json.error) == "string", label .. ": an error body")
    T.eq(res.json.error:sub(1, #c.error_prefix), c.error_prefix, label)
  end
  if c.body_exact then T.eq(res.body, c.body_exact, label) end
  if c.contains then T.contains(res.body, c.contains, label) end
  if c.ctype then T.match(res.headers["content-type"] or "", c.ctype, label .. ": content-type") end
  return res
end

local function run(h, rows) for _, c in ipairs(rows) do check(h, c) end end

local DENY_ALL = { osImages = {}, gatewayAppId = "any", kms = { mrAggregated = {}, devices = {}, allowAnyDevice = true }, apps = {} }

T.test("onboard mode: routing, prefixes, 404s, pages", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  local html404 = "text/html"
  run(h, {
    { "prefixed method", path = "/prpc/Onboard.GetAttestationInfo?json", body = "{}", status = 200, ctype = "application/json" },
    { "bare method", path = "/prpc/GetAttestationInfo?json", body = "{}", status = 200 },
    { "prefix stripped repeatedly", path = "/prpc/Onboard.Onboard.GetAttestationInfo?json", status = 200 },
    { "runtime method on the onboard server", path = "/prpc/KMS.GetMeta?json", status = 400, error = "Service not found: KMS.GetMeta" },
    { "unknown method", path = "/prpc/Onboard.Nope?json", status = 400, error = "Service not found: Nope" },
    { "method names are case-sensitive", path = "/prpc/getAttestationInfo?json", status = 400, error = "Service not found: getAttestationInfo" },
    { "/prpc/ with nothing after it", path = "/prpc/", status = 404, ctype = html404 },
    { "extra path segments", path = "/prpc/Onboard.Bootstrap/x?json", status = 404, ctype = html404 },
    { "404 as JSON when preferred", path = "/nope", method = "GET", headers = { Accept = "application/json" }, status = 404,
      ctype = "application/json", contains = '"code": 404' },
    { "POST /finish is not routed", path = "/finish", status = 404 },
    { "GET /health", path = "/health", method = "GET", status = 200, body_exact = "OK", ctype = "text/plain" },
    { "GET / says it is the emulator", path = "/", method = "GET", status = 200, contains = "kmsrun's KMS emulator" },
    { "Empty requests ignore the body", path = "/prpc/Onboard.GetAttestationInfo?json", body = "garbage", status = 200 },
    { "Empty requests ignore null", path = "/prpc/Onboard.GetAttestationInfo?json", body = "null", status = 200 },
  })
  -- GET /finish is tested in the lifecycle test (it ends onboard mode).
  T.eq(h.mode, "onboard")
  h:close(); a:close()
end)

T.test("onboard mode: JSON mode selection and binary protobuf", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  local bad = '{"domain":"kms..x"}'
  local label_err = "domain contains an invalid DNS label"
  for _, q in ipairs { "?json", "?json=", "?json=true", "?json=1", "?x=1&json" } do
    check(h, { "json flag " .. q, path = "/prpc/Onboard.Bootstrap" .. q, body = bad, status = 400, error = label_err })
  end
  -- Content-Type selects JSON for the body decoding step.
  check(h, { "Content-Type: application/json", path = "/prpc/Onboard.Bootstrap", body = bad,
    headers = { ["Content-Type"] = "application/json; charset=utf-8" }, status = 400, error = label_err })
  -- GET: always JSON; the message comes from the query string (the json key is ignored).
  check(h, { "GET with a query message", method = "GET", path = "/prpc/Onboard.Bootstrap?domain=kms..x", status = 400, error = label_err })
  check(h, { "GET with json flag and query", method = "GET", path = "/prpc/Onboard.Bootstrap?json&domain=-x", status = 400, error = label_err })
  check(h, { "GET without a query: defaults", method = "GET", path = "/prpc/Onboard.Bootstrap", status = 400,
    error = "domain must be a non-empty ASCII DNS name of at most 253 bytes" })
  -- Without JSON mode the body is protobuf and so is the answer, errors included.
  for _, q in ipairs { "", "?json=false", "?json=0" } do
    local res = F.req(h, "/prpc/Onboard.Bootstrap" .. q, { body = bad })
    T.eq(res.status, 400, "binary " .. q)
    T.eq(res.headers["content-type"], "application/octet-stream", "binary " .. q)
    T.eq(res.body:byte(1), 0x0a, "binary error is field #1 (string)")
  end
  local pb_req = PB.encode(messages.BootstrapRequest, { domain = "kms_x.com" })
  local res = F.req(h, "/prpc/Onboard.Bootstrap", { body = pb_req })
  T.eq(res.status, 400)
  T.eq(res.body, PB.error_body(label_err), "binary request decoded, binary error")
  res = F.req(h, "/prpc/Onboard.GetAttestationInfo", { body = "" })
  T.eq(res.status, 200)
  T.eq(res.headers["content-type"], "application/octet-stream")
  local info = assert(PB.decode(messages.AttestationInfoResponse, res.body))
  T.eq(crypto.hex(info.mr_aggregated), h.identity.mr_aggregated, "binary success answer")
  T.eq(info.tee_variant, "dstack-tdx")
  h:close(); a:close()
end)

T.test("onboard mode: request decoding errors (serde texts)", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  local P = "/prpc/Onboard.Bootstrap?json"
  run(h, {
    { "malformed JSON", path = P, body = "garbage", status = 400, error = "expected value at line 1 column 1" },
    { "not an identifier", path = P, body = "nul", status = 400, error = "EOF while parsing a value at line 1 column 3" },
    { "wrong type (integer)", path = P, body = '{"domain": 5}', status = 400,
      error = "invalid type: integer `5`, expected a string at line 1 column 12" },
    { "wrong type (boolean)", path = P, body = '{"domain": true}', status = 400,
      error = "invalid type: boolean `true`, expected a string at line 1 column 15" },
    { "wrong type (array)", path = P, body = '{"domain": ["a"]}', status = 400,
      error = "invalid type: sequence, expected a string at line 1 column 11" },
    { "literal null body", path = P, body = "null", status = 400,
      error = "invalid type: null, expected struct BootstrapRequest at line 1 column 4" },
    { "trailing characters", path = P, body = '{"domain":"x"} x', status = 400, error = "trailing characters at line 1 column 16" },
    { "duplicate field", path = P, body = '{"domain":"a","domain":"b"}', status = 400,
      error = "duplicate field `domain` at line 1 column 22" },
    { "unterminated object", path = P, body = '{"domain":"x"', status = 400, error = "EOF while parsing an object at line 1 column 13" },
    { "unknown fields are ignored", path = P, body = '{"x":{"y":[1,null]},"domain":""}', status = 400,
      error = "domain must be a non-empty ASCII DNS name of at most 253 bytes" },
    { "empty body takes the defaults", path = P, body = "", status = 400,
      error = "domain must be a non-empty ASCII DNS name of at most 253 bytes" },
  })
  h:close(); a:close()
end)

T.test("domain validation (3.1), checked before anything else", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  local BAD_NAME = "domain must be a non-empty ASCII DNS name of at most 253 bytes"
  local BAD_LABEL = "domain contains an invalid DNS label"
  local DENIED = "KMS is not allowed to bootstrap: boot denied: OS image is not allowed"
  local rows = {
    { "", BAD_NAME }, { string.rep("a.", 126) .. "ab", BAD_NAME }, { "km\195\169s.example", BAD_NAME },
    { "kms..x", BAD_LABEL }, { "kms.x.", BAD_LABEL }, { "-kms.x", BAD_LABEL }, { "kms-.x", BAD_LABEL },
    { "kms_x.com", BAD_LABEL }, { string.rep("a", 64) .. ".x", BAD_LABEL }, { "kms x", BAD_LABEL },
    -- accepted names get as far as the self-check (deny-all policy)
    { "localhost", DENIED }, { "KMS.Example.COM", DENIED }, { "10.0.2.2", DENIED }, { string.rep("a", 63) .. ".x", DENIED },
  }
  for _, r in ipairs(rows) do
    T.eq(F.rpc_error(h, "Onboard.Bootstrap", cjson.encode { domain = r[1] }), r[2], "Bootstrap " .. r[1])
  end
  T.eq(F.rpc_error(h, "Onboard.Onboard", cjson.encode { domain = "kms..x", source_url = "https://x" }), BAD_LABEL,
    "Onboard validates the domain first")
  h:close(); a:close()
end)

T.test("attestation info fields and key order", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url, image = "dstack-test-image" })
  local res = F.rpc(h, "Onboard.GetAttestationInfo")
  T.eq(res.status, 200)
  local keys = {}
  for k in res.body:gmatch('"([%w_]+)":') do keys[#keys + 1] = k end
  T.eq(keys, { "device_id", "mr_aggregated", "os_image_hash", "tee_variant", "site_name", "eth_rpc_url", "kms_contract_address", "ppid" })
  local j = res.json
  T.eq(j.mr_aggregated, h.identity.mr_aggregated)
  T.eq(j.os_image_hash, h.identity.os_image_hash)
  T.eq(j.device_id, crypto.hex(crypto.sha256(assert(crypto.unhex(j.ppid)))), "device_id = sha256(ppid)")
  T.eq(j.site_name, "test")
  T.eq(j.eth_rpc_url, "", "auth-simple sends no ethRpcUrl")
  T.eq(j.kms_contract_address, "0x0000000000000000000000000000000000000000")
  T.match(j.mr_aggregated, "^%x+$")
  T.eq(#j.mr_aggregated, 64)
  h:close(); a:close()
end)

T.test("bootstrap webhook failure texts (6.4)", function()
  local hook = F.hook()
  local h = assert(F.kms { webhook = hook.url })
  local U = hook.url
  local P = "KMS is not allowed to bootstrap: failed to call KMS auth check: "
  local body = '{"domain":"kms.test"}'
  local rows = {
    { "500", function() return 500, "boom" end, P .. "auth api " .. U .. "/bootAuth/kms returned 500 Internal Server Error: boom" },
    { "404", function() return 404, "404 Not Found" end, P .. "auth api " .. U .. "/bootAuth/kms returned 404 Not Found: 404 Not Found" },
    { "not JSON", function() return 200, "not-json" end,
      P .. "failed to decode response from " .. U .. "/bootAuth/kms, status=200 OK, body=not-json: expected ident at line 1 column 2" },
    { "missing isAllowed", function() return 200, '{"reason":"","gatewayAppId":""}' end,
      P .. "failed to decode response from " .. U .. '/bootAuth/kms, status=200 OK, body={"reason":"","gatewayAppId":""}: missing field `isAllowed` at line 1 column 31' },
    { "missing gatewayAppId", function() return 200, '{"isAllowed":true}' end,
      P .. "failed to decode response from " .. U .. '/bootAuth/kms, status=200 OK, body={"isAllowed":true}: missing field `gatewayAppId` at line 1 column 18' },
    { "isAllowed not a boolean", function() return 200, '{"isAllowed":"yes","reason":"","gatewayAppId":""}' end,
      P .. "failed to decode response from " .. U .. '/bootAuth/kms, status=200 OK, body={"isAllowed":"yes","reason":"","gatewayAppId":""}: invalid type: string "yes", expected a boolean at line 1 column 18' },
    { "body cut at 512 bytes", function() return 500, string.rep("x", 600) end,
      P .. "auth api " .. U .. "/bootAuth/kms returned 500 Internal Server Error: " .. string.rep("x", 512) },
    { "denied with an empty reason", function() return 200, '{"isAllowed":false,"reason":"","gatewayAppId":""}' end,
      "KMS is not allowed to bootstrap: boot denied: " },
  }
  for _, r in ipairs(rows) do
    hook.respond = r[2]
    T.eq(F.rpc_error(h, "Onboard.Bootstrap", body), r[3], r[1])
  end
  -- the request the KMS makes (6.2): POST U/bootAuth/kms, JSON, BootInfo keys in order
  local call = hook.calls[#hook.calls]
  T.eq(call.method, "POST")
  T.eq(call.path, "/bootAuth/kms")
  T.eq(call.headers["content-type"], "application/json")
  T.match(call.headers["user-agent"], "^dstack%-kms/")
  local keys = {}
  for k in call.body:gmatch('"(%w+)":') do keys[#keys + 1] = k end
  T.eq(keys, { "teeVariant", "mrAggregated", "osImageHash", "mrSystem", "appId", "composeHash", "instanceId",
    "deviceId", "keyProviderInfo", "tcbStatus", "advisoryIds" })
  local bi = cjson.decode(call.body)
  T.eq(bi.mrAggregated, h.identity.mr_aggregated)
  T.eq(bi.tcbStatus, "UpToDate")
  T.eq(#bi.appId, 40)
  T.eq(#bi.instanceId, 40)
  T.eq(bi.deviceId, h.identity.device_id)
  T.match(call.body, '"advisoryIds":%[%]}$')
  -- unreachable webhook (transport text prefix is library-dependent upstream)
  local port = F.dead_port()
  local h2 = assert(F.kms { webhook = "http://127.0.0.1:" .. port })
  local err = F.rpc_error(h2, "Onboard.Bootstrap", body)
  T.eq(err, P .. "error sending request for url (http://127.0.0.1:" .. port .. "/bootAuth/kms): client error (Connect): tcp connect error: Connection refused (os error 111)")
  -- GetAttestationInfo tolerates webhook errors (chain fields become "")
  local info = F.rpc(h2, "Onboard.GetAttestationInfo")
  T.eq(info.status, 200)
  T.eq(info.json.kms_contract_address, "")
  h:close(); h2:close(); hook:close()
end)

T.test("bootstrap twice, onboard after bootstrap, files in cert_dir", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  a:set_policy(F.allow(h))
  local res = F.rpc(h, "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  T.eq(res.status, 200)
  local keys = {}
  for k in res.body:gmatch('"([%w_]+)":') do keys[#keys + 1] = k end
  T.eq(keys, { "ca_pubkey", "k256_pubkey", "attestation" })
  T.match(res.json.ca_pubkey, "^3059301306072a8648ce3d0201")
  T.eq(#res.json.ca_pubkey, 182)
  T.match(res.json.k256_pubkey, "^0[23]%x+$")
  T.eq(#res.json.k256_pubkey, 66)
  -- the bootstrap attestation binds the keys (9.3, SHA-256 standing in for keccak256)
  local blob = assert(crypto.unhex(res.json.attestation))
  local doc = cjson.decode(blob)
  T.eq(doc.format, "kmsrun-emulated-attestation/v1")
  T.eq(doc.notice, "emulated by kmsrun, not a TEE quote")
  T.eq(doc.report_data, crypto.hex(A.bootstrap_report_data(assert(crypto.unhex(res.json.ca_pubkey)),
    assert(crypto.unhex(res.json.k256_pubkey)))))
  T.ok(A.verify(blob), "the attestation verifies")
  T.eq(F.rpc_error(h, "Onboard.Bootstrap", '{"domain":"kms.example.test"}'), "KMS has already been bootstrapped")
  T.eq(F.rpc_error(h, "Onboard.Onboard", '{"domain":"kms.example.test","source_url":"https://127.0.0.1:1"}'),
    "KMS has already been onboarded")
  -- files (2.6): seven key files, rpc-domain, bootstrap-info.json; keys 0600; k256 raw 32 bytes
  for _, name in ipairs { "tmp-ca.crt", "tmp-ca.key", "root-ca.crt", "root-ca.key", "rpc.crt", "rpc.key", "root-k256.key",
    "rpc-domain", "bootstrap-info.json" } do
    T.ok(fs.exists(h.dir .. "/" .. name), name .. " exists")
  end
  for _, name in ipairs { "tmp-ca.key", "root-ca.key", "rpc.key", "root-k256.key" } do
    T.eq(fs.stat(h.dir .. "/" .. name).mode & 511, 384, name .. " is 0600")
  end
  T.eq(#fs.read(h.dir .. "/root-k256.key"), 32)
  T.eq(fs.read(h.dir .. "/rpc-domain"), "kms.example.test")
  T.eq(fs.read(h.dir .. "/bootstrap-info.json"), res.body, "bootstrap-info.json is the compact response")
  T.match(fs.read(h.dir .. "/root-ca.key"), "^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-")
  -- certificate shapes (8.3)
  local root = crypto.parse_cert(fs.read(h.dir .. "/root-ca.crt"))
  T.eq(root.subject, "O=Dstack, CN=Dstack KMS CA")
  T.eq(root.pathlen, 1)
  local tmp = crypto.parse_cert(fs.read(h.dir .. "/tmp-ca.crt"))
  T.eq(tmp.subject, "O=Dstack, CN=Dstack Client Temp CA")
  T.eq(tmp.issuer, tmp.subject, "temp CA is an independent root")
  T.eq(tmp.pathlen, 0)
  local rpc = crypto.parse_cert(fs.read(h.dir .. "/rpc.crt"))
  T.eq(rpc.subject, "CN=kms.example.test")
  T.eq(rpc.issuer, "O=Dstack, CN=Dstack KMS CA")
  T.eq(rpc.san, { "DNS:kms.example.test" })
  T.eq(rpc.extensions[A.OID_SPECIAL_USAGE], "kms:rpc")
  T.ok(A.verify_with_ra_pubkey(rpc.extensions[A.OID], rpc.public_key_der), "RPC cert carries a bound emulated attestation")
  T.ok(crypto.verify_chain(fs.read(h.dir .. "/rpc.crt"), { roots = fs.read(h.dir .. "/root-ca.crt") }))
  h:close(); a:close()
end)

T.test("lifecycle: /finish switches to TLS on the same port; restart comes back in runtime mode", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  a:set_policy(F.allow(h))
  local port = h.port
  local boot = F.rpc(h, "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  T.eq(boot.status, 200)
  local fin = F.req(h, "/finish", { method = "GET" })
  T.eq(fin.status, 200)
  T.eq(fin.body, "OK")
  assert(h:wait_mode("runtime"))
  T.eq(h.port, port, "same port")
  T.match(h:url(), "^https://")
  local meta = F.rpc(h, "KMS.GetMeta", "")
  T.eq(meta.status, 200)
  T.eq(meta.json.bootstrap_info, boot.json)
  h:close()
  -- same cert_dir: runtime mode directly, same identity (salt kept in cert_dir), same keys
  local h2 = assert(F.kms { webhook = a.url, dir = h.dir })
  T.eq(h2.mode, "runtime")
  T.eq(h2.identity.mr_aggregated, h.identity.mr_aggregated)
  local meta2 = F.rpc(h2, "KMS.GetMeta", "")
  T.eq(meta2.json.k256_pubkey, meta.json.k256_pubkey)
  T.eq(F.rpc(h2, "KMS.GetTempCaCert", "").status, 200)
  h2:close()
  -- Onboard.Finish does the same as GET /finish
  local h3 = assert(F.kms { webhook = a.url })
  a:set_policy(F.allow(h3))
  T.eq(F.rpc(h3, "Onboard.Bootstrap", '{"domain":"kms3.test"}').status, 200)
  local rf = F.rpc(h3, "Onboard.Finish", "{}")
  T.eq(rf.status, 200)
  T.eq(rf.body, "null")
  assert(h3:wait_mode("runtime"))
  h3:close(); a:close()
end)

T.test("/finish before keys exist: the emulated process exits with 'Failed to onboard'", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  T.eq(F.req(h, "/finish", { method = "GET" }).body, "OK")
  local code, err = h:wait()
  T.eq(code, 1)
  T.eq(err, "Failed to onboard")
  T.eq(h.mode, "exited")
  a:close()
end)

T.test("runtime mode: routing, GetMeta fields, headers, metrics", function()
  local hook = F.hook()
  local h = assert(F.kms { webhook = hook.url })
  hook.respond = function(req)
    if req.path == "/" then return 200, F.INFO_OK end
    return 200, '{"isAllowed":true,"reason":"","gatewayAppId":"any"}'
  end
  local boot = F.bootstrap_and_finish(h)
  local meta = check(h, { "GetMeta", path = "/prpc/KMS.GetMeta?json", status = 200, ctype = "application/json" })
  local keys = {}
  for k in meta.body:gmatch('"([%w_]+)":') do
    if k ~= "ca_pubkey" and k ~= "k256_pubkey" and k ~= "attestation" then keys[#keys + 1] = k end
  end
  T.eq(keys, { "ca_cert", "allow_any_upgrade", "bootstrap_info", "is_dev", "gateway_app_id", "kms_contract_address",
    "chain_id", "app_auth_implementation" })
  local m = meta.json
  T.match(m.ca_cert, "^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n")
  T.eq(m.allow_any_upgrade, false)
  T.eq(m.is_dev, false)
  T.eq(m.k256_pubkey, boot.k256_pubkey)
  T.eq(m.bootstrap_info, boot)
  T.eq(m.gateway_app_id, "gw")
  T.eq(m.kms_contract_address, "0xkms")
  T.eq(m.chain_id, 11155111)
  T.contains(meta.body, '"chain_id":11155111', "u64 as a JSON number")
  T.eq(m.app_auth_implementation, "0ximpl")
  T.ok(meta.headers["x-app-version"], "X-App-Version header")
  run(h, {
    { "bare GetMeta", path = "/prpc/GetMeta?json", status = 200 },
    { "GET GetMeta", method = "GET", path = "/prpc/KMS.GetMeta", status = 200 },
    { "onboard method on the runtime server", path = "/prpc/Onboard.Bootstrap?json", status = 400, error = "Service not found: Onboard.Bootstrap" },
    { "health", method = "GET", path = "/health", status = 200, body_exact = "OK" },
    { "no /finish in runtime mode", method = "GET", path = "/finish", status = 404 },
    { "metrics", method = "GET", path = "/metrics", status = 200, contains = "dstack_kms_attestation_requests_total 0" },
  })
  -- GetMeta webhook info failures propagate unwrapped (6.1, 4.2)
  local U = hook.url
  hook.respond = function(req) if req.path == "/" then return 200, '{"status":"ok"}' end end
  T.eq(F.rpc_error(h, "KMS.GetMeta", ""), "failed to decode response from " .. U
    .. ', status=200 OK, body={"status":"ok"}: missing field `kmsContractAddr` at line 1 column 15')
  hook.respond = function() return 200, '{"status":"ok","kmsContractAddr":"","gatewayAppId":"","chainId":"1","appImplementation":""}' end
  T.match(F.rpc_error(h, "KMS.GetMeta", ""), 'invalid type: string "1", expected u64 at line 1 column %d+$')
  hook.respond = function() return 503, "down" end
  T.eq(F.rpc_error(h, "KMS.GetMeta", ""), "auth api " .. U .. " returned 503 Service Unavailable: down")
  h:close(); hook:close()
end)

T.test("runtime mode: self-check and caller-check order and texts", function()
  local hook = F.hook()
  local allow, deny = '{"isAllowed":true,"reason":"","gatewayAppId":"any"}', '{"isAllowed":false,"reason":"aggregated MR not allowed","gatewayAppId":"any"}'
  local self_verdict = allow
  hook.respond = function(req)
    if req.path == "/" then return 200, F.INFO_OK end
    return 200, self_verdict
  end
  local h = assert(F.kms { webhook = hook.url })
  F.bootstrap_and_finish(h)
  local APP_ID = string.rep("ab", 20)
  local allowed = {
    { "GetTempCaCert", "KMS.GetTempCaCert", "", 200 },
    { "GetKmsKey needs caller attestation", "KMS.GetKmsKey", '{"vm_config":""}', 400, "No attestation provided" },
    { "GetAppKey needs caller attestation", "KMS.GetAppKey", '{"api_version":1}', 400, "App not allowed: No attestation provided" },
    { "GetAppKey api_version 2", "KMS.GetAppKey", '{"api_version":2}', 400, "Unsupported API version: 2" },
    { "GetAppKey api_version 0 accepted", "KMS.GetAppKey", '{"api_version":0}', 400, "App not allowed: No attestation provided" },
    { "SignCert api_version 3", "KMS.SignCert", '{"api_version":3}', 400, "Unsupported API version: 3" },
    { "SignCert garbage csr", "KMS.SignCert", '{"api_version":2,"csr":"deadbeef"}', 400, "Failed to parse csr: Codec error" },
    { "GetAppEnvEncryptPubKey short app_id", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"abcd"}', 400, "app_id must be 20 bytes" },
    { "GetAppEnvEncryptPubKey odd hex", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"abc"}', 400, "Odd number of digits at line 1 column 16" },
    { "GetAppEnvEncryptPubKey bad hex", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"zz"}', 400,
      "Invalid character 'z' at position 0 at line 1 column 15" },
    -- The hex crate checks the length before the digits (hex 0.4, FromHex for Vec<u8>).
    { "GetAppEnvEncryptPubKey odd bad hex", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"zzz"}', 400,
      "Odd number of digits at line 1 column 16" },
    { "GetAppEnvEncryptPubKey tab in hex", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"a\\tbc"}', 400,
      "Invalid character '\\t' at position 1 at line 1 column 18" },
    { "GetAppEnvEncryptPubKey 0x accepted", "KMS.GetAppEnvEncryptPubKey", '{"app_id":"0x' .. APP_ID .. '"}', 200 },
  }
  for _, r in ipairs(allowed) do
    local res = F.rpc(h, r[2], r[3])
    T.eq(res.status, r[4], r[1] .. ": " .. res.body)
    if r[5] then T.eq(res.json.error, r[5], r[1]) end
  end
  local pkres = F.rpc(h, "KMS.GetAppEnvEncryptPubKey", '{"app_id":"' .. APP_ID .. '"}')
  local pk = pkres.json
  T.eq(#pk.public_key, 64)
  T.eq(#pk.signature, 130)
  T.eq(#pk.signature_v1, 130)
  T.match(pkres.body, '"timestamp":%d+,', "u64 timestamp as a JSON number")
  -- policy flip: every trusted RPC fails the self-check first; GetMeta stays green
  self_verdict = deny
  local SELF = "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"
  local denied = {
    { "KMS.GetTempCaCert", "", SELF }, { "KMS.GetKmsKey", "{}", SELF }, { "KMS.GetAppKey", '{"api_version":1}', SELF },
    { "KMS.GetAppKey", '{"api_version":2}', "Unsupported API version: 2" }, -- checked before the self-check
    { "KMS.SignCert", '{"api_version":3}', SELF }, -- self-check first
    { "KMS.GetAppEnvEncryptPubKey", '{"app_id":"ab"}', SELF },
  }
  for _, r in ipairs(denied) do T.eq(F.rpc_error(h, r[1], r[2]), r[3], r[1] .. " " .. r[2]) end
  T.eq(F.rpc(h, "KMS.GetMeta", "").status, 200, "GetMeta has no self-check")
  -- webhook failures in the runtime self-check
  local U = hook.url
  hook.respond = function(req) if req.path == "/" then return 200, F.INFO_OK end return 500, "boom" end
  T.eq(F.rpc_error(h, "KMS.GetTempCaCert", ""),
    "KMS self authorization failed: Failed to call self KMS auth check: auth api " .. U .. "/bootAuth/kms returned 500 Internal Server Error: boom")
  -- no decision cache: the next call is asked again
  hook.respond = function() return 200, allow end
  T.eq(F.rpc(h, "KMS.GetTempCaCert", "").status, 200)
  h:close(); hook:close()
end)

T.test("runtime mode: client certificates and the early (pre-dispatch) error path", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  a:set_policy(F.allow(h))
  F.bootstrap_and_finish(h)
  local temp = F.rpc(h, "KMS.GetTempCaCert", "").json
  -- a certificate under the temp CA whose attestation is bound to another key
  local key, other = crypto.keygen("P-256"), crypto.keygen("P-256")
  local blob = A.build(require("kmsrun.emu.kms.identity").derive { salt = "x" },
    A.ratls_report_data(crypto.key_info(other).public_der))
  local cert = assert(crypto.cert { key = key, subject = { CN = "RA-TLS TEMP Cert" }, issuer_cert = temp.temp_ca_cert,
    issuer_key = temp.temp_ca_key, extensions = { { oid = A.OID, value = blob } } })
  local tls = { insecure = true, cert = cert, key = key }
  local res = F.rpc(h, "KMS.GetMeta", "", { tls = tls, fresh = true })
  T.eq(res.status, 400)
  T.eq(res.json.error, "invalid quote: report data mismatch", "verified before any method, GetMeta included")
  -- early errors use JSON only by rule 1/2: Content-Type alone gives protobuf
  res = F.req(h, "/prpc/KMS.GetMeta", { body = "", headers = { ["Content-Type"] = "application/json" }, tls = tls, fresh = true })
  T.eq(res.status, 400)
  T.eq(res.headers["content-type"], "application/octet-stream")
  T.eq(res.body, PB.error_body("invalid quote: report data mismatch"))
  -- a certificate not under the temp CA fails the TLS handshake
  local stranger = assert(crypto.cert { key = key, subject = { CN = "x" } })
  local r2, _, code = http.request(h:url("/prpc/KMS.GetMeta?json"), { tls = { insecure = true, cert = stranger, key = key }, fresh = true })
  T.ok(r2 == nil, "handshake refused")
  T.ok(code == "ETLS" or code == "ECONNRESET", "TLS failure code " .. tostring(code))
  h:close(); a:close()
end)

T.test("attestation unavailable (11.3): bootstrap and trusted RPCs fail with the real texts", function()
  local a = F.auth(DENY_ALL)
  local NOAGENT = "client error (Connect): No such file or directory (os error 2)"
  local body = '{"domain":"kms.test"}'
  local h1 = assert(F.kms { webhook = a.url, no_attestation = true })
  T.eq(F.rpc_error(h1, "Onboard.Bootstrap", body),
    "KMS is not allowed to bootstrap: failed to build local KMS boot info: Failed to get local KMS attestation: " .. NOAGENT)
  T.eq(F.rpc_error(h1, "Onboard.GetAttestationInfo"), "Failed to get attestation: " .. NOAGENT)
  h1:close()
  local h2 = assert(F.kms { webhook = a.url, agent_address = "unix:/nonexistent/dstack.sock", core = { enforce_self_authorization = false } })
  T.eq(F.rpc_error(h2, "Onboard.Bootstrap", body), "Failed to generate keys: failed to get a quote for the KMS RPC certificate. "
    .. "The KMS attests itself through the dstack guest agent, so it must run inside a dstack CVM. "
    .. "For local development set attest_rpc_cert = false: " .. NOAGENT)
  h2:close()
  local h3 = assert(F.kms { webhook = a.url, no_attestation = true, core = { enforce_self_authorization = false, attest_rpc_cert = false } })
  T.eq(F.rpc_error(h3, "Onboard.Bootstrap", body), NOAGENT, "the bootstrap attestation is always required")
  T.ok(not fs.exists(h3.dir .. "/root-ca.key"), "nothing written")
  h3:close()
  -- auto-bootstrap with both knobs off needs no guest agent; trusted RPCs then skip the self-check
  local h4 = assert(F.kms { webhook = a.url, no_attestation = true,
    core = { enforce_self_authorization = false, attest_rpc_cert = false,
      onboard = { enabled = true, auto_bootstrap_domain = "kms.auto.test", address = "127.0.0.1", port = 0 } } })
  T.eq(h4.mode, "runtime")
  T.ok(not fs.exists(h4.dir .. "/bootstrap-info.json"), "no bootstrap-info.json after auto-bootstrap")
  T.eq(F.rpc(h4, "KMS.GetTempCaCert", "").status, 200)
  T.eq(F.rpc(h4, "KMS.GetMeta", "").json.bootstrap_info, cjson.null)
  h4:close()
  -- the same keys with enforce_self_authorization = true: trusted RPCs need the quote
  local h5 = assert(F.kms { webhook = a.url, no_attestation = true, dir = h4.dir, core = { attest_rpc_cert = false,
    onboard = { enabled = true, auto_bootstrap_domain = "kms.auto.test", address = "127.0.0.1", port = 0 } } })
  T.eq(F.rpc_error(h5, "KMS.GetTempCaCert", ""),
    "KMS self authorization failed: Failed to load cached self boot info: Failed to get local KMS attestation: " .. NOAGENT)
  T.eq(F.rpc(h5, "KMS.GetMeta", "").status, 200)
  h5:close()
  -- attest_rpc_cert = true needs the agent at every start
  local h6, err = F.kms { webhook = a.url, no_attestation = true, dir = h4.dir }
  T.eq(h6, nil)
  T.eq(err, "Failed to reissue the attested KMS RPC certificate; refusing to start with a potentially unattested certificate: "
    .. "failed to get a quote for the KMS RPC certificate. The KMS attests itself through the dstack guest agent, so it must "
    .. "run inside a dstack CVM. For local development set attest_rpc_cert = false: " .. NOAGENT)
  a:close()
end)

T.test("auto-bootstrap denied ends the process", function()
  local a = F.auth(DENY_ALL)
  local h, err = F.kms { webhook = a.url,
    core = { onboard = { enabled = true, auto_bootstrap_domain = "kms.auto.test", address = "127.0.0.1", port = 0 } } }
  T.eq(h, nil)
  T.eq(err, "KMS is not allowed to auto-bootstrap: boot denied: OS image is not allowed")
  local h2, err2 = F.kms { webhook = a.url,
    core = { onboard = { enabled = true, auto_bootstrap_domain = "kms..x", address = "127.0.0.1", port = 0 } } }
  T.eq(h2, nil)
  T.eq(err2, "domain contains an invalid DNS label")
  a:close()
end)

T.test("onboard receiver: source errors (3.3 b, e, g)", function()
  local asrc, adst = F.auth(DENY_ALL), F.auth(DENY_ALL)
  local src = assert(F.kms { webhook = asrc.url, name = "src" })
  local dst = assert(F.kms { webhook = adst.url, name = "dst" })
  asrc:set_policy(F.allow(src, dst))
  F.bootstrap_and_finish(src, "kms-src.test")
  local base = src:url()
  local function onboard(url)
    return F.rpc_error(dst, "Onboard.Onboard", cjson.encode { source_url = url, domain = "kms-dst.test" })
  end
  -- URL normalization (step 4) shows in the texts
  adst:set_policy(F.deny_by_mr(src))
  for _, u in ipairs { base, base .. "/", base .. "/prpc", base .. "/prpc/", base .. "//" } do
    T.eq(onboard(u), "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed", u)
  end
  -- plain HTTP source (another KMS in onboard mode)
  local plain = assert(F.kms { webhook = adst.url })
  T.eq(onboard(plain:url()), "Failed to onboard: failed to validate the server attestation of " .. plain:url()
    .. "/prpc: No TLS info in response")
  plain:close()
  -- unreachable source
  local port = F.dead_port()
  T.eq(onboard("https://127.0.0.1:" .. port), "Failed to onboard: Failed to send request: error sending request for url "
    .. "(https://127.0.0.1:" .. port .. "/prpc/GetTempCaCert?json): client error (Connect): tcp connect error: Connection refused (os error 111)")
  -- source that denies itself: its 400 body nested (1.5)
  adst:set_policy(F.allow(src))
  asrc:set_policy(F.allow(dst))
  T.eq(onboard(base), 'Failed to onboard: Request failed with status=400 Bad Request, error={\n  "error": "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"\n}')
  -- source that denies the receiver (GetKmsKey caller check, capital B)
  asrc:set_policy(F.allow(src))
  T.eq(onboard(base), 'Failed to onboard: Request failed with status=400 Bad Request, error={\n  "error": "Boot denied: aggregated MR not allowed"\n}')
  -- receiver without a guest agent fails after GetTempCaCert
  local blind = assert(F.kms { webhook = adst.url, no_attestation = true })
  T.eq(F.rpc_error(blind, "Onboard.Onboard", cjson.encode { source_url = base, domain = "x.test" }),
    "Failed to onboard: Failed to get quote: client error (Connect): No such file or directory (os error 2)")
  blind:close()
  -- a source without an attested RPC certificate
  local aun = F.auth(DENY_ALL)
  local unattested = assert(F.kms { webhook = aun.url, core = { attest_rpc_cert = false } })
  aun:set_policy(F.allow(unattested))
  F.bootstrap_and_finish(unattested, "kms-un.test")
  T.eq(onboard(unattested:url()), "Failed to onboard: failed to validate the server attestation of " .. unattested:url()
    .. "/prpc: Source KMS certificate does not contain attestation")
  unattested:close(); aun:close()
  src:close(); dst:close(); asrc:close(); adst:close()
end)

T.test("onboard receiver: success inherits the keys; the source saw an RA-TLS TEMP Cert", function()
  local asrc, adst = F.auth(DENY_ALL), F.auth(DENY_ALL)
  local leak = F.tmpdir() .. "/leaked-keys"
  local src = assert(F.kms { webhook = asrc.url, name = "src", leak_keys_to = leak })
  local dst = assert(F.kms { webhook = adst.url, name = "dst" })
  asrc:set_policy(F.allow(src, dst))
  adst:set_policy(F.allow(src))
  F.bootstrap_and_finish(src, "kms-src.test")
  local res = F.rpc(dst, "Onboard.Onboard", cjson.encode { source_url = src:url("/prpc"), domain = "kms-dst.test" })
  T.eq(res.status, 200, res.body)
  local meta_src = F.rpc(src, "KMS.GetMeta", "").json
  T.eq(res.json, { k256_pubkey = meta_src.k256_pubkey }, "response carries the inherited k256 key")
  T.eq(F.req(dst, "/finish", { method = "GET" }).body, "OK")
  assert(dst:wait_mode("runtime"))
  adst:set_policy(F.allow(src, dst))
  local meta_dst = F.rpc(dst, "KMS.GetMeta", "").json
  T.eq(meta_dst.k256_pubkey, meta_src.k256_pubkey, "same k256 key")
  T.ok(meta_dst.ca_cert ~= meta_src.ca_cert, "root-ca.crt PEM differs")
  T.eq(crypto.parse_cert(meta_dst.ca_cert).public_key_der, crypto.parse_cert(meta_src.ca_cert).public_key_der, "same CA key")
  T.eq(meta_dst.bootstrap_info, cjson.null, "no bootstrap-info.json on an onboarded instance")
  T.ok(not fs.exists(dst.dir .. "/bootstrap-info.json"))
  T.eq(fs.read(dst.dir .. "/tmp-ca.key"), fs.read(src.dir .. "/tmp-ca.key"), "temp CA key inherited")
  T.ok(fs.read(dst.dir .. "/rpc.key") ~= fs.read(src.dir .. "/rpc.key"), "new RPC key")
  T.eq(F.rpc(dst, "KMS.GetTempCaCert", "").status, 200, "the receiver works after /finish")
  -- the leak file holds what the source handed out (temp CA key twice: GetTempCaCert, GetKmsKey)
  local leaked = fs.read(leak)
  T.contains(leaked, fs.read(src.dir .. "/root-ca.key"))
  T.contains(leaked, crypto.hex(fs.read(src.dir .. "/root-k256.key")))
  T.contains(leaked, "handed out temp_ca_key in GetKmsKey")
  -- the source's log names the caller it handed keys to
  local seen = false
  for _, line in ipairs(src.logs) do if line:find("GetKmsKey: handing the KMS keys", 1, true) then seen = true end end
  T.ok(seen, "source logged the key handover")
  src:close(); dst:close(); asrc:close(); adst:close()
end)

T.test("log lines: startup, one line per RPC with outcome and duration", function()
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  F.rpc(h, "Onboard.Bootstrap", '{"domain":"kms.test"}')
  F.rpc(h, "Onboard.GetAttestationInfo")
  local text = table.concat(h.logs, "\n")
  T.contains(text, "kms-sim (emulator) starting")
  T.contains(text, "onboard mode: listening on http://127.0.0.1:")
  T.match(text, "%d%d%d%d%-%d%d%-%d%dT[%d:%.]+Z kms%-sim%[kms%] rpc POST Onboard%.Bootstrap %-> 400 error: KMS is not allowed to bootstrap: boot denied: OS image is not allowed %(%d+ ms%)")
  T.match(text, "rpc POST Onboard%.GetAttestationInfo %-> 200 ok %(%d+ ms%)")
  h:close(); a:close()
end)

T.test("switches: mutation names and fault specs are validated; the warning is loud", function()
  local a = F.auth(DENY_ALL)
  local h, err = F.kms { webhook = a.url, mutations = { "skip-everything" } }
  T.eq(h, nil)
  T.match(err, "^unknown mutation 'skip%-everything'")
  h, err = F.kms { webhook = a.url, faults = { "explode=GetMeta" } }
  T.eq(h, nil)
  T.match(err, "^unknown fault 'explode=GetMeta'")
  h = assert(F.kms { webhook = a.url, mutations = { "skip-bootstrap-self-check" } })
  T.contains(table.concat(h.logs, "\n"), "WARNING: TEST-ONLY MUTATION ACTIVE: skip-bootstrap-self-check")
  h:close(); a:close()
end)

T.test("faults: status500, badjson, slow, listen-delay", function()
  local a = F.auth(DENY_ALL)
  local started = require("kmsrun.time").now()
  local h = assert(F.kms { webhook = a.url, faults = { "status500=Onboard.GetAttestationInfo", "badjson=Bootstrap",
    "slow=Onboard.Onboard:0.2", "listen-delay=0.2" } })
  T.ok(require("kmsrun.time").now() - started >= 0.18, "listened after the delay")
  T.eq(F.rpc(h, "Onboard.GetAttestationInfo").status, 500)
  local bj = F.rpc(h, "Onboard.Bootstrap", '{"domain":"x.test"}')
  T.eq(bj.status, 200)
  T.eq(bj.json, nil, "unparseable JSON")
  local t0 = require("kmsrun.time").now()
  F.rpc(h, "Onboard.Onboard", '{"domain":"kms..x"}')
  T.ok(require("kmsrun.time").now() - t0 >= 0.18, "slow method")
  h:close(); a:close()
end)

-- An RA-TLS client certificate under the KMS's temp CA carrying identity id's emulated attestation.
local function attested_client(temp, id)
  local key = crypto.keygen("P-256")
  local blob = A.build(id, A.ratls_report_data(crypto.key_info(key).public_der))
  local cert = assert(crypto.cert { key = key, subject = { CN = "RA-TLS TEMP Cert" }, issuer_cert = temp.temp_ca_cert,
    issuer_key = temp.temp_ca_key, extensions = { { oid = A.OID, value = blob } } })
  return { insecure = true, cert = cert, key = key }
end

T.test("GetAppKey and GetKmsKey with emulated caller attestations", function()
  local identity = require "kmsrun.emu.kms.identity"
  local a = F.auth(DENY_ALL)
  local h = assert(F.kms { webhook = a.url })
  local policy = F.allow(h)
  a:set_policy(policy)
  F.bootstrap_and_finish(h)
  local temp = F.rpc(h, "KMS.GetTempCaCert", "").json
  local app = identity.derive { image = "dstack-0.5.7", compose = '{"name":"app"}', salt = "app-instance-1" }
  local app_hex = identity.summary(app)
  local tls = attested_client(temp, app)
  local function app_key() return F.rpc(h, "KMS.GetAppKey", '{"api_version":1}', { tls = tls, fresh = true }) end
  local res = app_key()
  T.eq(res.json.error, "App not allowed: Boot denied: app not registered")
  policy.apps = { ["0x" .. app_hex.app_id] = { composeHashes = { "0x" .. app_hex.compose_hash }, devices = {}, allowAnyDevice = true } }
  a:set_policy(policy)
  res = app_key()
  T.eq(res.status, 200, res.body)
  local k = res.json
  T.eq(k.ca_cert, F.rpc(h, "KMS.GetMeta", "").json.ca_cert)
  for _, f in ipairs { "disk_crypt_key", "env_crypt_key", "k256_key" } do T.match(k[f], "^" .. string.rep("%x", 64) .. "$", f) end
  T.eq(#k.k256_signature, 130)
  T.eq(k.gateway_app_id, "any")
  T.eq(k.tproxy_app_id, "any")
  T.eq(k.os_image_hash, app_hex.os_image_hash)
  local again = app_key().json
  T.eq(again.disk_crypt_key, k.disk_crypt_key, "derivations are deterministic")
  local other = identity.derive { image = "dstack-0.5.7", compose = '{"name":"app"}', salt = "app-instance-2" }
  local k2 = F.rpc(h, "KMS.GetAppKey", '{"api_version":1}', { tls = attested_client(temp, other), fresh = true }).json
  T.ok(k2.disk_crypt_key ~= k.disk_crypt_key, "disk key is per instance")
  T.eq(k2.env_crypt_key, k.env_crypt_key, "env key is per app")
  T.eq(k2.k256_key, k.k256_key, "k256 key is per app")
  -- GetAppEnvEncryptPubKey serves the public half of the same per-app secret (emulated X25519)
  local pk = F.rpc(h, "KMS.GetAppEnvEncryptPubKey", '{"app_id":"' .. app_hex.app_id .. '"}').json
  T.eq(pk.public_key, crypto.hex(require("kmsrun.emu.kms.derive").x25519_public(assert(crypto.unhex(k.env_crypt_key)))))
  -- a caller-supplied vm_config is decoded like upstream's VmConfig
  res = F.rpc(h, "KMS.GetAppKey", '{"api_version":1,"vm_config":"not json"}', { tls = tls, fresh = true })
  T.eq(res.json.error, "App not allowed: decode app info: Failed to decode os image hash: Failed to parse vm config: expected ident at line 1 column 2")
  -- GetKmsKey: the caller is a KMS checked at /bootAuth/kms (capital-B denial), errors unwrapped
  local peer = identity.derive { image = "dstack-0.5.7", compose = "kms.toml", salt = "peer" }
  local peer_tls = attested_client(temp, peer)
  res = F.rpc(h, "KMS.GetKmsKey", '{"vm_config":""}', { tls = peer_tls, fresh = true })
  T.eq(res.json.error, "Boot denied: aggregated MR not allowed")
  table.insert(policy.kms.mrAggregated, "0x" .. identity.summary(peer).mr_aggregated)
  a:set_policy(policy)
  res = F.rpc(h, "KMS.GetKmsKey", '{"vm_config":""}', { tls = peer_tls, fresh = true })
  T.eq(res.status, 200, res.body)
  T.eq(#res.json.keys, 1)
  T.eq(res.json.keys[1].ca_key, fs.read(h.dir .. "/root-ca.key"))
  T.eq(res.json.keys[1].k256_key, crypto.hex(fs.read(h.dir .. "/root-k256.key")))
  T.eq(res.json.temp_ca_key, temp.temp_ca_key)
  T.contains(F.req(h, "/metrics", { method = "GET" }).body, "dstack_kms_attestation_failures_total 3")
  h:close(); a:close()
end)

T.test("core.image.verify: the emulated image check asks download_url", function()
  local identity = require "kmsrun.emu.kms.identity"
  local a = F.auth(DENY_ALL)
  local images = F.hook(function(req)
    if req.path:match("^/good") then return 200, "image" end
    return 404, "no such image"
  end)
  local dir = F.tmpdir()
  local cfg = F.config(dir, a.url, { image = { verify = true, download_url = images.url .. "/bad/{OS_IMAGE_HASH}.tar.gz" } })
  local h = assert(F.kms { config = cfg, dir = dir })
  local peer = identity.derive { image = "dstack-0.5.7", compose = "x", salt = "peer" }
  local policy = F.allow(h)
  table.insert(policy.kms.mrAggregated, "0x" .. identity.summary(peer).mr_aggregated)
  a:set_policy(policy)
  F.bootstrap_and_finish(h)
  local temp = F.rpc(h, "KMS.GetTempCaCert", "").json
  local res = F.rpc(h, "KMS.GetKmsKey", "{}", { tls = attested_client(temp, peer), fresh = true })
  T.eq(res.json.error, "Failed to verify os image hash: Failed to verify os image hash: Failed to download image: "
    .. images.url .. "/bad/" .. identity.summary(peer).os_image_hash .. ".tar.gz returned 404 Not Found")
  T.eq(images.calls[#images.calls].path, "/bad/" .. identity.summary(peer).os_image_hash .. ".tar.gz")
  h:close(); a:close(); images:close()
end)

T.test("--host-alias rewrites outgoing hosts, texts keep the configured URL", function()
  local a = F.auth(DENY_ALL)
  local url = a.url:gsub("127%.0%.0%.1", "10.0.2.2")
  local h = assert(F.kms { webhook = url, host_alias = { "10.0.2.2=127.0.0.1" } })
  T.eq(F.rpc_error(h, "Onboard.Bootstrap", '{"domain":"kms.test"}'), "KMS is not allowed to bootstrap: boot denied: OS image is not allowed")
  h:close(); a:close()
end)

T.test("emulated identity: deterministic inputs, fresh salt = fresh instance", function()
  local identity = require "kmsrun.emu.kms.identity"
  local S = function(t) return identity.summary(identity.derive(t)) end
  local base = { image = "dstack-0.5.7", compose = "kms.toml bytes", salt = "salt-1" }
  local a, b = S(base), S(base)
  T.eq(a, b, "same inputs, same identity")
  local redeploy = S { image = "dstack-0.5.7", compose = "kms.toml bytes", salt = "salt-2" }
  T.ok(redeploy.mr_aggregated ~= a.mr_aggregated, "new salt: new MR")
  T.ok(redeploy.instance_id ~= a.instance_id, "new salt: new instance id")
  T.eq(redeploy.app_id, a.app_id, "same compose: same app id")
  T.eq(redeploy.os_image_hash, a.os_image_hash)
  T.eq(redeploy.mr_system, a.mr_system, "mr_system does not include the instance id")
  local recompose = S { image = "dstack-0.5.7", compose = "kms.toml bytes ", salt = "salt-1" }
  T.ok(recompose.app_id ~= a.app_id and recompose.mr_aggregated ~= a.mr_aggregated, "compose bytes are measured")
  T.eq(recompose.compose_hash, crypto.hex(crypto.sha256("kms.toml bytes ")))
  T.eq(recompose.app_id, recompose.compose_hash:sub(1, 40), "app id = first 20 bytes of the compose hash")
  local reimage = S { image = "dstack-0.5.8", compose = "kms.toml bytes", salt = "salt-1" }
  T.ok(reimage.os_image_hash ~= a.os_image_hash and reimage.mr_system ~= a.mr_system, "image is measured")
  T.eq(S { image = "x", salt = "s", device = "\1\2" }.device_id, crypto.hex(crypto.sha256("\1\2")))
  -- the boot-time measurement (SignCert) differs from the full one and has no key-provider info
  local id = identity.derive(base)
  local boot = identity.measure(id.regs, id.events, true)
  T.ok(boot.mr_aggregated ~= id.mr_aggregated)
  T.eq(boot.key_provider_info, "")
  -- a tampered document does not verify
  local blob = A.build(id, string.rep("\0", 64))
  T.ok(A.verify(blob))
  local _, err = A.verify((blob:gsub('"tcb_status":"UpToDate"', '"tcb_status":"OutOfDate"')))
  T.eq(err, "emulated attestation digest mismatch")
  local _, err2 = A.verify("")
  T.eq(err2, "Empty attestation bytes")
end)

T.test("instances started with the same cert_dir but no --salt keep their identity", function()
  local a = F.auth(DENY_ALL)
  local h1 = assert(F.kms { webhook = a.url })
  local id1 = h1.identity
  h1:close()
  local h2 = assert(F.kms { webhook = a.url, dir = h1.dir })
  T.eq(h2.identity.instance_id, id1.instance_id)
  h2:close()
  local h3 = assert(F.kms { webhook = a.url, dir = h1.dir, salt = "00ff" })
  T.ok(h3.identity.instance_id ~= id1.instance_id, "--salt wins")
  h3:close(); a:close()
end)

T.test("cleanup", function() F.cleanup() end)
