-- Onboard mode (kms-protocol.md 2.3, section 3): the plain-HTTP server of a KMS without
-- keys, with Bootstrap, Onboard (the receiver's side of key handover), GetAttestationInfo
-- and Finish, plus GET /, /finish and /health.
local crypto = require "kmsrun.crypto"
local http = require "kmsrun.http"
local S = require "kmsrun.lib.json_serde"
local A = require "kmsrun.emu.kms.attestation"
local K = require "kmsrun.emu.kms.keys"
local W = require "kmsrun.emu.kms.webhook"
local store = require "kmsrun.emu.kms.store"
local messages = require "kmsrun.kms.messages"
local selfauth = require "kmsrun.emu.kms.selfauth"
local prpc = require "kmsrun.emu.kms.prpc"

local O = {}


--- Domain validation (3.1); returns nil when valid, else the error text.
function O.validate_domain(domain)
  if domain == "" or #domain > 253 or domain:find("[\128-\255]") then
    return "domain must be a non-empty ASCII DNS name of at most 253 bytes"
  end
  for label in (domain .. "."):gmatch("([^.]*)%.") do
    if label == "" or #label > 63 or label:sub(1, 1) == "-" or label:sub(-1) == "-" or label:find("[^%w%-]") then
      return "domain contains an invalid DNS label"
    end
  end
  return nil
end

--- source_url normalization (3.3 step 4).
function O.normalize_source(url)
  url = url:gsub("/+$", "")
  if url:sub(-5) ~= "/prpc" then url = url .. "/prpc" end
  return url
end

-- Bootstrap and Onboard share one lock (concurrent calls are serialized).
local function locked(inst, fn)
  while inst.onboard_lock do require("kmsrun.time").sleep(0.005) end
  inst.onboard_lock = true
  local ok, a, b = pcall(fn)
  inst.onboard_lock = false
  if not ok then error(a, 0) end
  return a, b
end

function O.bootstrap(inst, domain)
  local derr = O.validate_domain(domain)
  if derr then return nil, derr end
  return locked(inst, function()
    local p = inst.paths
    if store.exists(p.bootstrap_info) or store.exists(p.root_ca_key) or store.exists(p.k256_key) then
      return nil, "KMS has already been bootstrapped"
    end
    local ok, err = selfauth.bootstrap_check(inst)
    if not ok then return nil, "KMS is not allowed to bootstrap: " .. err end
    local keys = K.new_keys()
    local built, kerr = K.build(inst, keys, domain)
    if not built then return nil, "Failed to generate keys: " .. kerr end
    local k256_pubkey = K.k256_pubkey(keys.k256)
    local ca_pubkey = K.spki(keys.ca_key)
    -- The bootstrap attestation is always required, whatever the two knobs say (3.2 step 6).
    local attestation, aerr = inst.agent:attest(A.bootstrap_report_data(ca_pubkey, k256_pubkey))
    if not attestation then
      if not (inst.agent.unavailable and inst:mutation("allow-no-quote")) then return nil, aerr end
      attestation = ""
    end
    local resp = { ca_pubkey = ca_pubkey, k256_pubkey = k256_pubkey, attestation = attestation }
    local wok, werr = store.write(p.bootstrap_info, messages.to_json(messages.BootstrapResponse, resp))
    if not wok then return nil, werr end
    local sok, serr = K.store(p, keys)
    if not sok then return nil, serr end
    inst:log("bootstrapped: domain=%s ca_pubkey=%s k256_pubkey=%s", domain,
      crypto.hex(ca_pubkey):sub(1, 16) .. "…", crypto.hex(k256_pubkey))
    return resp
  end)
end

-- dstack's KMS-to-KMS prpc client (1.7): POST <src>/<Method>?json, no Content-Type.
local function source_call(inst, src, method, body, tls)
  local url = src .. "/" .. method .. "?json"
  local res, err, code = http.request(inst.rewrite(url), {
    method = "POST", body = body, timeout = 60, connect_timeout = 5, tls = tls, fresh = true,
  })
  if not res then return nil, "Failed to send request: " .. W.transport_error(url, err, code) end
  return res
end

local function decode_answer(res, schema)
  if res.status < 200 or res.status > 299 then
    return nil, string.format("Request failed with status=%s, error=%s", W.status_text(res.status), res.body)
  end
  local v, err = S.decode(res.body == "" and "null" or res.body, schema)
  if not v then return nil, "Failed to deserialize response: " .. err end
  return v
end

-- The validator on the source's TLS leaf (3.3 step b1-b4).
local function source_attestation(res, src)
  local prefix = "failed to validate the server attestation of " .. src .. ": "
  if res.certs == nil then return nil, prefix .. "No TLS info in response" end
  local leaf = res.certs[1]
  if not leaf then return nil, prefix .. "Source KMS did not present a TLS certificate" end
  local blob, info, perr = A.from_cert(leaf)
  if not info then return nil, prefix .. "failed to parse the server certificate: " .. tostring(perr) end
  if not blob then return nil, prefix .. "Source KMS certificate does not contain attestation" end
  local v, verr = A.verify_with_ra_pubkey(blob, info.public_key_der)
  if not v then return nil, prefix .. "failed to verify the attestation report presented by the server: " .. verr end
  return v
end

--- The receiver sequence (3.3 steps a-j); returns keys or nil, inner error.
function O.receive(inst, src, domain)
  -- a, b: GetTempCaCert over TLS without verification, the leaf checked before the status.
  local tls = src:match("^https:") and { insecure = true } or nil
  local res, err = source_call(inst, src, "GetTempCaCert", "null", tls)
  if not res then return nil, err end
  local source_att, verr = source_attestation(res, src)
  if not source_att then return nil, verr end
  local temp, terr = decode_answer(res, messages.GetTempCaCertResponse)
  if not temp then return nil, terr end
  -- c: a client certificate carrying the receiver's attestation, signed by the source's temp CA.
  local client_key = crypto.keygen("P-256")
  local blob, qerr = inst.agent:attest(A.ratls_report_data(K.spki(client_key)))
  if not blob then return nil, "Failed to get quote: " .. qerr end
  local client_crt, cerr = crypto.cert {
    key = client_key, subject = { CN = "RA-TLS TEMP Cert" }, issuer_cert = temp.temp_ca_cert,
    issuer_key = temp.temp_ca_key, extensions = { { oid = A.OID, value = blob } }, days = 3650,
  }
  if not client_crt then return nil, "Failed to sign certificate: " .. tostring(cerr) end
  -- e: the source, as seen in its certificate, against the receiver's own webhook.
  local ok, serr = selfauth.source_check(inst, source_att)
  if not ok then return nil, "Source KMS is not allowed for onboarding: " .. serr end
  -- f, g: GetKmsKey over mTLS with the receiver's vm_config.
  local info, ierr = inst.agent:info()
  if not info then return nil, "Failed to get info: " .. ierr end
  local mtls = tls and { insecure = true, cert = client_crt, key = client_key } or nil
  res, err = source_call(inst, src, "GetKmsKey", S.encode(S.obj { { "vm_config", info.vm_config } }), mtls)
  if not res then return nil, err end
  local kk, kerr = decode_answer(res, messages.KmsKeyResponse)
  if not kk then return nil, kerr end
  -- h, i: exactly one key entry, parseable keys.
  if #kk.keys ~= 1 then return nil, "Invalid keys" end
  local entry = kk.keys[1]
  if not crypto.key_info(entry.ca_key) then return nil, "Failed to parse CA key" end
  if not crypto.key_info(kk.temp_ca_key) then return nil, "Failed to parse tmp CA key" end
  if #entry.k256_key ~= 32 or not crypto.key_from_raw("secp256k1", entry.k256_key) then
    return nil, "Failed to parse ECDSA key"
  end
  -- j: inherited root CA, temp CA and k256 keys; a new RPC key; certificates re-created.
  local keys = { tmp_ca_key = kk.temp_ca_key, ca_key = entry.ca_key, rpc_key = crypto.keygen("P-256"), k256 = entry.k256_key }
  return K.build(inst, keys, domain)
end

function O.onboard(inst, source_url, domain)
  local derr = O.validate_domain(domain)
  if derr then return nil, derr end
  return locked(inst, function()
    local p = inst.paths
    if store.exists(p.root_ca_key) or store.exists(p.k256_key) then return nil, "KMS has already been onboarded" end
    local src = O.normalize_source(source_url)
    local keys, err = O.receive(inst, src, domain)
    if not keys then return nil, "Failed to onboard: " .. err end
    local ok, serr = K.store(p, keys)
    if not ok then return nil, "Failed to store keys: " .. serr end
    local pub = K.k256_pubkey(keys.k256)
    inst:log("onboarded from %s: domain=%s k256_pubkey=%s", src, domain, crypto.hex(pub))
    return { k256_pubkey = pub }
  end)
end

function O.attestation_info(inst)
  local v, err = selfauth.own_attestation(inst, "attestation")
  if not v then return nil, err end
  local info, ierr = inst.agent:info()
  if not info then return nil, "Failed to get VM info: " .. ierr end
  -- Webhook errors are tolerated here (logged; the chain fields become "").
  local wi, werr = inst.webhook:info()
  if not wi then inst:log("failed to get auth api info: %s", werr); wi = {} end
  local bi, berr = A.boot_info(v, false, info.vm_config)
  if not bi then return nil, "Failed to decode app info: " .. berr end
  return {
    device_id = crypto.sha256(v.ppid), mr_aggregated = bi.mr_aggregated, os_image_hash = bi.os_image_hash,
    tee_variant = v.tee_variant, site_name = inst.cfg.core.site_name, eth_rpc_url = wi.eth_rpc_url or "",
    kms_contract_address = wi.kms_contract_address or "", ppid = v.ppid,
  }
end

--- The Onboard prpc service.
function O.service(inst)
  local m = messages
  return {
    prefix = "Onboard.",
    methods = {
      Bootstrap = { input = m.BootstrapRequest, output = m.BootstrapResponse,
        handler = function(_, req) return O.bootstrap(inst, req.domain) end },
      Onboard = { input = m.OnboardRequest, output = m.OnboardResponse,
        handler = function(_, req) return O.onboard(inst, req.source_url, req.domain) end },
      GetAttestationInfo = { output = m.AttestationInfoResponse,
        handler = function() return O.attestation_info(inst) end },
      Finish = { handler = function() inst:request_finish("Onboard.Finish"); return true end },
    },
  }
end

local PAGE = [[<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>kms-sim (emulator): onboarding</title></head>
<body>
<h1>kms-sim &mdash; kmsrun's KMS emulator (onboard mode)</h1>
<p>This is <strong>not</strong> a dstack KMS. It is kmsrun's emulator of the KMS wire protocol,
for testing. Its attestation is emulated (format <code>%s</code>), not a TEE quote.</p>
<p>RPCs: <code>POST /prpc/Onboard.Bootstrap?json</code>, <code>POST /prpc/Onboard.Onboard?json</code>,
<code>POST /prpc/Onboard.GetAttestationInfo?json</code>, <code>GET /finish</code>.</p>
</body>
</html>
]]

--- The onboard-mode HTTP handler.
function O.handler(inst)
  local service = O.service(inst)
  return function(req)
    if req.path == "/" and req.method == "GET" then
      return 200, PAGE:format(A.FORMAT), { ["Content-Type"] = "text/html; charset=utf-8" }
    end
    if req.path == "/health" and req.method == "GET" then return 200, "OK", { ["Content-Type"] = "text/plain; charset=utf-8" } end
    if req.path == "/finish" and req.method == "GET" then
      inst:request_finish("GET /finish")
      return 200, "OK", { ["Content-Type"] = "text/plain; charset=utf-8" }
    end
    local st, body, headers = inst:rpc(service, req)
    if st then return st, body, headers end
    return prpc.not_found(req)
  end
end

return O
