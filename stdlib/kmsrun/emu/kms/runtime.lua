-- Runtime mode (kms-protocol.md 2.5, section 4): the TLS server with the KMS service.
-- Trusted RPCs run the self-check first (selfauth.runtime_check); callers prove
-- themselves with an RA-TLS client certificate carrying the emulated attestation.
local crypto = require "kmsrun.crypto"
local S = require "kmsrun.lib.json_serde"
local A = require "kmsrun.emu.kms.attestation"
local K = require "kmsrun.emu.kms.keys"
local store = require "kmsrun.emu.kms.store"
local messages = require "kmsrun.kms.messages"
local selfauth = require "kmsrun.emu.kms.selfauth"
local derive = require "kmsrun.emu.kms.derive"
local prpc = require "kmsrun.emu.kms.prpc"
local signcert = require "kmsrun.emu.kms.signcert"

local R = {}

R.APP_VERSION = "kms-sim-emulator/0.1.0"

-- Client-certificate processing before any method (4.1): a presented certificate's
-- attestation is verified against the certificate key; no certificate, no attestation.
function R.client_attestation(req)
  if not req.peer_cert then return { attestation = nil } end
  local blob, info, perr = A.from_cert(req.peer_cert)
  if not info then return nil, "failed to parse the client certificate: " .. tostring(perr) end
  if not blob then return { attestation = nil } end
  local _, derr = A.decode(blob)
  if derr then return nil, derr end
  local v, verr = A.verify_with_ra_pubkey(blob, info.public_key_der)
  if not v then return nil, "invalid quote: " .. verr end
  return { attestation = v }
end

local function leak(inst, method, kind, value)
  inst:leak(method, kind, value)
  return value
end

function R.service(inst)
  local m = messages
  local st = inst.state
  local function self_check() return selfauth.runtime_check(inst) end

  return {
    prefix = "KMS.",
    methods = {
      GetMeta = { output = m.GetMetaResponse, handler = function()
        local bootstrap_info
        local raw = store.read(inst.paths.bootstrap_info)
        if raw then bootstrap_info = S.decode(raw, m.BootstrapResponse) end
        local info, err = inst.webhook:info()
        if not info then return nil, err end
        return {
          ca_cert = st.root_ca_crt, allow_any_upgrade = info.is_dev, k256_pubkey = st.k256_pubkey,
          bootstrap_info = bootstrap_info, is_dev = info.is_dev, gateway_app_id = info.gateway_app_id,
          kms_contract_address = info.kms_contract_address, chain_id = info.chain_id,
          app_auth_implementation = info.app_implementation,
        }
      end },

      GetTempCaCert = { output = m.GetTempCaCertResponse, handler = function()
        local ok, err = self_check()
        if ok == nil then return nil, err end
        return {
          temp_ca_cert = st.tmp_ca_crt, temp_ca_key = leak(inst, "GetTempCaCert", "temp_ca_key", st.tmp_ca_key),
          ca_cert = st.root_ca_crt,
        }
      end },

      GetKmsKey = { input = m.GetKmsKeyRequest, output = m.KmsKeyResponse, handler = function(call, req)
        local ok, err = self_check()
        if ok == nil then return nil, err end
        if not call.attestation then return nil, "No attestation provided" end
        local allowed, cerr = selfauth.caller_check(inst, call.attestation, true, false, req.vm_config)
        if not allowed then return nil, cerr end
        inst:log("GetKmsKey: handing the KMS keys to instance %s (app %s)",
          crypto.hex(allowed.boot_info.instance_id), crypto.hex(allowed.boot_info.app_id))
        return {
          temp_ca_key = leak(inst, "GetKmsKey", "temp_ca_key", st.tmp_ca_key),
          keys = { {
            ca_key = leak(inst, "GetKmsKey", "ca_key", st.ca_key),
            k256_key = leak(inst, "GetKmsKey", "k256_key", st.k256),
          } },
        }
      end },

      GetAppKey = { input = m.GetAppKeyRequest, output = m.AppKeyResponse, handler = function(call, req)
        if req.api_version > 1 then return nil, "Unsupported API version: " .. req.api_version end
        local ok, err = self_check()
        if ok == nil then return nil, err end
        if not call.attestation then return nil, "App not allowed: No attestation provided" end
        local allowed, cerr = selfauth.caller_check(inst, call.attestation, false, false, req.vm_config)
        if not allowed then return nil, "App not allowed: " .. cerr end
        local bi = allowed.boot_info
        local disk = derive.secret(st.root_material, { bi.app_id, bi.instance_id, "app-disk-crypt-key" })
        local env = derive.secret(st.root_material, { bi.app_id, "env-encrypt-key" })
        local app_k256 = derive.k256_scalar(st.k256, { bi.app_id, "app-key" })
        local app_pub = K.k256_pubkey(app_k256)
        return {
          ca_cert = st.root_ca_crt,
          disk_crypt_key = leak(inst, "GetAppKey", "disk_crypt_key", disk),
          env_crypt_key = leak(inst, "GetAppKey", "env_crypt_key", env),
          k256_key = leak(inst, "GetAppKey", "k256_key", app_k256),
          k256_signature = derive.sign65(st.k256, "dstack-kms-issued:" .. bi.app_id .. app_pub),
          tproxy_app_id = allowed.gateway_app_id, gateway_app_id = allowed.gateway_app_id,
          os_image_hash = bi.os_image_hash,
        }
      end },

      GetAppEnvEncryptPubKey = { input = m.AppId, output = m.PublicKeyResponse, handler = function(_, req)
        local ok, err = self_check()
        if ok == nil then return nil, err end
        if #req.app_id ~= 20 then return nil, "app_id must be 20 bytes" end
        local secret = derive.secret(st.root_material, { req.app_id, "env-encrypt-key" })
        local pub = derive.x25519_public(secret)
        local ts = math.floor(os.time())
        return {
          public_key = pub,
          signature = derive.sign65(st.k256, "dstack-env-encrypt-pubkey:" .. req.app_id .. pub),
          timestamp = ts,
          signature_v1 = derive.sign65(st.k256, "dstack-env-encrypt-pubkey:" .. req.app_id .. string.pack(">I8", ts) .. pub),
        }
      end },

      SignCert = { input = m.SignCertRequest, output = m.SignCertResponse, handler = function(_, req)
        return signcert.handle(inst, req)
      end },
    },
  }
end

--- Builds the runtime state from cert_dir (2.2 step 5). Returns state or nil, error.
function R.state(inst)
  local keys, err = K.load(inst.paths)
  if not keys then return nil, "Failed to initialize KMS state: " .. err end
  keys.k256_pubkey = K.k256_pubkey(keys.k256)
  local info = crypto.key_info(keys.ca_key)
  if not info then return nil, "Failed to initialize KMS state: Failed to load root CA certificate: invalid key" end
  keys.root_material = info.private_raw
  return keys
end

local METRICS = "# HELP dstack_kms_attestation_requests_total Total number of KMS attestation requests.\n"
  .. "# TYPE dstack_kms_attestation_requests_total counter\n"
  .. "dstack_kms_attestation_requests_total %d\n"
  .. "# HELP dstack_kms_attestation_failures_total Total number of failed KMS attestation requests.\n"
  .. "# TYPE dstack_kms_attestation_failures_total counter\n"
  .. "dstack_kms_attestation_failures_total %d\n"

local COUNTED = { GetAppKey = true, GetKmsKey = true, SignCert = true }

--- The runtime-mode HTTP handler (every answer carries X-App-Version).
function R.handler(inst)
  local service = R.service(inst)
  local counters = { requests = 0, failures = 0 }
  inst.metrics = counters
  local function with_version(st, body, headers)
    headers = headers or {}
    headers["X-App-Version"] = R.APP_VERSION
    return st, body, headers
  end
  return function(req)
    if req.path == "/health" and req.method == "GET" then
      return with_version(200, "OK", { ["Content-Type"] = "text/plain; charset=utf-8" })
    end
    if req.path == "/metrics" and req.method == "GET" and inst.cfg.core.metrics and inst.cfg.core.metrics.enabled ~= false then
      return with_version(200, METRICS:format(counters.requests, counters.failures),
        { ["Content-Type"] = "text/plain; version=0.0.4" })
    end
    local st, body, headers, info = inst:rpc(service, req, R.client_attestation)
    if not st then return with_version(prpc.not_found(req)) end
    if info and COUNTED[info.method] then
      counters.requests = counters.requests + 1
      if st >= 400 then counters.failures = counters.failures + 1 end
    end
    return with_version(st, body, headers)
  end
end

return R
