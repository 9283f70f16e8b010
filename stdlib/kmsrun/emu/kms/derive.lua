-- Key derivations for GetAppKey / GetAppEnvEncryptPubKey, EMULATED: HKDF-SHA256 (salt
-- "RATLS") over the root key material with the upstream context labels (4.5), so values are
-- deterministic per KMS key set and app, and identical on a KMS that onboarded from this one.
-- The signatures are emulated too: real ECDSA secp256k1 signatures by the root k256 key, but
-- over SHA-256 instead of keccak256 and with a recovery byte that is always 0; the X25519
-- public key is a hash stand-in. See docs/emulator.md.
local crypto = require "kmsrun.crypto"

local M = {}

--- HKDF-SHA256 (RFC 5869) with a 32-byte output.
function M.hkdf(ikm, salt, info)
  local prk = crypto.hmac_sha256(salt, ikm)
  return crypto.hmac_sha256(prk, info .. "\1")
end

local function context(parts)
  -- length-prefixed parts, so ("ab","c") and ("a","bc") differ
  local out = {}
  for _, p in ipairs(parts) do out[#out + 1] = string.pack(">s2", p) end
  return table.concat(out)
end

--- 32 bytes derived from root material for the context parts.
function M.secret(root, parts)
  return M.hkdf(root, "RATLS", context(parts))
end

--- A valid secp256k1 scalar derived from root for the context parts (re-derived on the
-- negligible chance of an out-of-range value).
function M.k256_scalar(root, parts)
  local s = M.secret(root, parts)
  while not crypto.key_from_raw("secp256k1", s) do s = crypto.sha256(s) end
  return s
end

-- DER ECDSA signature -> 32-byte r || 32-byte s.
local function der_to_rs(der)
  local function int_at(pos)
    assert(der:byte(pos) == 0x02, "derive: bad DER signature")
    local len = der:byte(pos + 1)
    local v = der:sub(pos + 2, pos + 1 + len):gsub("^%z+", "")
    return string.rep("\0", 32 - #v) .. v, pos + 2 + len
  end
  local r, next_pos = int_at(3)
  local s = int_at(next_pos)
  return r .. s
end

--- Emulated recoverable signature (65 bytes) of message by the raw k256 key.
function M.sign65(k256_raw, message)
  local pem = assert(crypto.key_from_raw("secp256k1", k256_raw))
  local der = assert(crypto.sign(pem, message))
  return der_to_rs(der) .. "\0"
end

--- Emulated X25519 public key for a 32-byte secret.
function M.x25519_public(secret)
  return crypto.sha256("kmsrun-sim:x25519-public:" .. secret)
end

return M
