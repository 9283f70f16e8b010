-- The KMS key set and its certificates (kms-protocol.md 2.6, 2.7, 8.3): generation,
-- the certificate shapes, storage in cert_dir, loading and the reissue at every start.
local crypto = require "kmsrun.crypto"
local A = require "kmsrun.emu.kms.attestation"
local store = require "kmsrun.emu.kms.store"
local config = require "kmsrun.emu.kms.config"

local K = {}

local CA_USAGE = { "digitalSignature", "keyCertSign", "cRLSign" }
local VALIDITY_DAYS = 3650
local RENEW_WINDOW = 365 * 86400

K.QUOTE_CONTEXT = "failed to get a quote for the KMS RPC certificate. The KMS attests itself through the dstack "
  .. "guest agent, so it must run inside a dstack CVM. For local development set attest_rpc_cert = false"

--- Fresh private keys: three P-256 keys (PKCS#8 PEM) and the secp256k1 root key (raw 32 bytes).
function K.new_keys()
  local k256_pem = crypto.keygen("secp256k1")
  return {
    tmp_ca_key = crypto.keygen("P-256"), ca_key = crypto.keygen("P-256"), rpc_key = crypto.keygen("P-256"),
    k256 = crypto.key_info(k256_pem).private_raw,
  }
end

--- Compressed secp256k1 public key (33 bytes) of the raw root k256 key.
function K.k256_pubkey(raw)
  local pem, err = crypto.key_from_raw("secp256k1", raw)
  if not pem then return nil, err end
  return crypto.key_info(pem).public_compressed
end

--- DER SubjectPublicKeyInfo of a key PEM.
function K.spki(pem)
  local info, err = crypto.key_info(pem)
  if not info then return nil, err end
  return info.public_der
end

--- The two self-signed CA certificates over the given keys (new certificates, same subjects).
function K.ca_certs(keys)
  local tmp = assert(crypto.cert {
    key = keys.tmp_ca_key, subject = { O = "Dstack", CN = "Dstack Client Temp CA" },
    ca = true, pathlen = 0, key_usage = CA_USAGE, days = VALIDITY_DAYS,
  })
  local root = assert(crypto.cert {
    key = keys.ca_key, subject = { O = "Dstack", CN = "Dstack KMS CA" },
    ca = true, pathlen = 1, key_usage = CA_USAGE, days = VALIDITY_DAYS,
  })
  return tmp, root
end

--- The RPC (TLS server) certificate for domain, signed by the root CA; it carries the
-- emulated attestation when attest. Returns PEM or nil, error (3.2 step 5 texts).
-- allow_unattested: the allow-no-quote mutation (a missing agent silently gives no attestation).
function K.rpc_cert(inst, keys, root_ca_crt, domain, attest)
  local exts = { { oid = A.OID_SPECIAL_USAGE, value = "kms:rpc" } }
  if attest then
    local blob, err = inst.agent:attest(A.ratls_report_data(K.spki(keys.rpc_key)), inst.old_format_cert)
    if not blob then
      if not inst:mutation("allow-no-quote") then return nil, K.QUOTE_CONTEXT .. ": " .. err end
    else
      local _, derr = A.decode(blob)
      if derr then return nil, "Invalid attestation: " .. derr end
      exts[#exts + 1] = { oid = A.OID, value = blob }
    end
  end
  local pem, err = crypto.cert {
    key = keys.rpc_key, subject = { CN = domain }, issuer_cert = root_ca_crt, issuer_key = keys.ca_key,
    san = { domain }, key_usage = { "digitalSignature" }, extensions = exts, days = VALIDITY_DAYS,
  }
  if not pem then return nil, "Failed to sign the RPC certificate: " .. tostring(err) end
  return pem
end

--- Completes keys with certificates for domain (Keys::from_keys). Returns keys or nil, error.
function K.build(inst, keys, domain)
  keys.tmp_ca_crt, keys.root_ca_crt = K.ca_certs(keys)
  local rpc, err = K.rpc_cert(inst, keys, keys.root_ca_crt, domain, inst.cfg.core.attest_rpc_cert)
  if not rpc then return nil, err end
  keys.rpc_crt, keys.domain = rpc, domain
  return keys
end

--- Whether all seven key files exist (2.2).
function K.exist(paths)
  for _, name in ipairs(config.KEY_FILES) do
    if not store.exists(paths[name]) then return false end
  end
  return true
end

--- Writes the key set and rpc-domain (not bootstrap-info.json). Returns true or nil, error.
function K.store(paths, keys)
  store.mkdir(paths.dir)
  local files = {
    { paths.tmp_ca_key, keys.tmp_ca_key, true }, { paths.tmp_ca_crt, keys.tmp_ca_crt },
    { paths.root_ca_key, keys.ca_key, true }, { paths.root_ca_crt, keys.root_ca_crt },
    { paths.rpc_key, keys.rpc_key, true }, { paths.rpc_crt, keys.rpc_crt },
    { paths.k256_key, keys.k256, true }, { paths.rpc_domain, keys.domain },
  }
  for _, f in ipairs(files) do
    local ok, err = store.write(f[1], f[2], f[3])
    if not ok then return nil, err end
  end
  return true
end

--- Loads the key set for the runtime state (2.2 step 5 texts). Returns keys or nil, error.
function K.load(paths)
  local function rd(path, what)
    local data, err = store.read(path)
    if not data then return nil, what .. ": " .. tostring(err) end
    return data
  end
  local keys, err = {}, nil
  keys.root_ca_crt, err = rd(paths.root_ca_crt, "Failed to load root CA certificate: Failed to read cert file")
  if not keys.root_ca_crt then return nil, err end
  keys.ca_key, err = rd(paths.root_ca_key, "Failed to load root CA certificate: Failed to read key file")
  if not keys.ca_key then return nil, err end
  keys.k256, err = rd(paths.k256_key, "Failed to read ECDSA root key")
  if not keys.k256 then return nil, err end
  if #keys.k256 ~= 32 or not crypto.key_from_raw("secp256k1", keys.k256) then
    return nil, "Failed to load ECDSA root key: signature error"
  end
  keys.tmp_ca_key, err = rd(paths.tmp_ca_key, "Faeild to read temp ca key")
  if not keys.tmp_ca_key then return nil, err end
  keys.tmp_ca_crt, err = rd(paths.tmp_ca_crt, "Faeild to read temp ca cert")
  if not keys.tmp_ca_crt then return nil, err end
  keys.rpc_key = store.read(paths.rpc_key)
  keys.rpc_crt = store.read(paths.rpc_crt)
  return keys
end

--- The reissue at every runtime start (2.7): CA certificates rebuilt in memory (on disk
-- only when expiring within a year), a new rpc.crt always. Returns keys or nil, error.
function K.reissue(inst, paths, domain)
  local function rd(path)
    local data, err = store.read(path)
    if not data then return nil, string.format("failed to open file `%s`: %s", path, tostring(err)) end
    return data
  end
  local keys, err = {}, nil
  for _, f in ipairs { { "tmp_ca_key", paths.tmp_ca_key }, { "ca_key", paths.root_ca_key },
    { "rpc_key", paths.rpc_key }, { "k256", paths.k256_key } } do
    keys[f[1]], err = rd(f[2])
    if not keys[f[1]] then return nil, err end
  end
  local tmp, root = K.ca_certs(keys)
  for _, f in ipairs { { paths.tmp_ca_crt, tmp }, { paths.root_ca_crt, root } } do
    local cur = store.read(f[1])
    local info = cur and crypto.parse_cert(cur)
    if not info or info.not_after - os.time() < RENEW_WINDOW then
      local ok, werr = store.write(f[1], f[2])
      if not ok then return nil, werr end
    end
  end
  local rpc, rerr = K.rpc_cert(inst, keys, root, domain, inst.cfg.core.attest_rpc_cert)
  if not rpc then return nil, rerr end
  local ok, werr = store.write(paths.rpc_crt, rpc)
  if not ok then return nil, werr end
  return true
end

return K
