-- dstack's certificate signing request (SignCert, kms-protocol.md 4.4): not PKCS#10 but a
-- SCALE-encoded struct signed with ECDSA P-256 / SHA-256 (DER signature) by the key it
-- names (upstream dstack/ra-tls/src/cert.rs:181-330, CertSigningRequestV1/V2, Csr::verify).
--   V2: confirm, pubkey (SPKI DER), config (CertConfigV2), attestation
--   V1: confirm, pubkey, config (CertConfig), quote, event_log
-- Upstream's attestation is a SCALE VersionedAttestation; here it is carried as one byte
-- vector holding whatever attestation the signer has (the emulator's own format on sim).
local crypto = require "kmsrun.crypto"
local scale = require "kmsrun.lib.scale"

local M = {}

M.CONFIRM = "please sign cert:"

local function config_enc(c, v2)
  local parts = {
    scale.option(c.org_name, scale.str), scale.str(c.subject or ""),
    scale.vec(c.subject_alt_names or {}, scale.str),
    scale.bool(c.usage_server_auth), scale.bool(c.usage_client_auth), scale.bool(c.ext_quote),
  }
  if v2 then
    parts[#parts + 1] = scale.bool(c.ext_app_info)
    parts[#parts + 1] = scale.option(c.not_before, scale.u64)
    parts[#parts + 1] = scale.option(c.not_after, scale.u64)
  end
  return table.concat(parts)
end

--- Encodes { confirm, pubkey, config = {...}, attestation } as version 1 or 2 (default 2).
function M.encode(t, version)
  local v2 = (version or 2) == 2
  local out = scale.str(t.confirm or M.CONFIRM) .. scale.bytes(t.pubkey) .. config_enc(t.config or {}, v2)
  if v2 then return out .. scale.bytes(t.attestation or "") end
  return out .. scale.bytes(t.attestation or "") .. scale.bytes(t.event_log or "")
end

--- Decodes a CSR of the given version; returns the table or nil, "Codec error".
function M.decode(data, version)
  local v2 = version == 2
  return scale.decode(data, function(r)
    local t = { confirm = r:str(), pubkey = r:bytes(), config = {} }
    local c = t.config
    c.org_name = r:option(r.str)
    c.subject = r:str()
    c.subject_alt_names = r:vec(r.str)
    c.usage_server_auth, c.usage_client_auth, c.ext_quote = r:bool(), r:bool(), r:bool()
    if v2 then
      c.ext_app_info = r:bool()
      c.not_before = r:option(r.u64)
      c.not_after = r:option(r.u64)
    end
    t.attestation = r:bytes()
    if not v2 then t.event_log = r:bytes() end
    return t
  end)
end

--- PEM text of a DER SubjectPublicKeyInfo.
function M.spki_pem(der)
  local b64 = crypto.base64(der)
  local lines = {}
  for i = 1, #b64, 64 do lines[#lines + 1] = b64:sub(i, i + 63) end
  return "-----BEGIN PUBLIC KEY-----\n" .. table.concat(lines, "\n") .. "\n-----END PUBLIC KEY-----\n"
end

--- The signature over an encoded CSR by the private key PEM (what the requester sends).
function M.sign(key_pem, encoded) return crypto.sign(key_pem, encoded) end

--- Csr::verify: the signature over the encoded bytes under the CSR's own key, then the
-- confirm word. Returns true or nil, upstream's text.
function M.verify(t, encoded, signature)
  local pem = M.spki_pem(t.pubkey)
  local info = crypto.key_info(pem)
  if not info then return nil, "Failed to parse pubkey" end
  -- Upstream accepts any EC key here, then verifies as P-256: another curve fails there.
  if info.curve ~= "P-256" or not crypto.verify(pem, encoded, signature) then return nil, "Invalid signature" end
  if t.confirm ~= M.CONFIRM then return nil, "Invalid confirm word" end
  return true
end

return M
