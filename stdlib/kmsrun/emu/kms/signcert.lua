-- SignCert (kms-protocol.md 4.4), in upstream's order (dstack/kms/src/main_service.rs:514-565):
-- self-check, CSR decode and signature, the CSR's attestation bound to the CSR key
-- ("Quote verification failed"), the app check on the BOOT-TIME measurement, then a
-- certificate signed by the app CA that is derived from the root CA key per app
-- (derive_app_ca, main_service.rs:334-353) and the chain [leaf, app CA, root CA].
local crypto = require "kmsrun.crypto"
local csr = require "kmsrun.kms.csr"
local A = require "kmsrun.emu.kms.attestation"
local derive = require "kmsrun.emu.kms.derive"
local selfauth = require "kmsrun.emu.kms.selfauth"

local M = {}

-- dstack's RA-TLS OIDs (dstack/ra-tls/src/oids.rs): app id and certificate usage.
M.OID_APP_ID = "1.3.6.1.4.1.62397.1.3"
local OID_USAGE = A.OID_SPECIAL_USAGE
local DAY = 86400

--- The app CA of app_id: a P-256 key derived from the root CA key with [app_id, "app-ca"],
-- certified by the root CA (pathlen 0, app id and "app:ca" usage extensions).
function M.app_ca(st, app_id)
  local scalar = derive.secret(st.root_material, { app_id, "app-ca" })
  local key = crypto.key_from_raw("P-256", scalar)
  while not key do scalar = crypto.sha256(scalar); key = crypto.key_from_raw("P-256", scalar) end
  local cert, err = crypto.cert {
    key = key, subject = { O = "Dstack", CN = "Dstack App CA" }, ca = true, pathlen = 0,
    key_usage = { "digitalSignature", "keyCertSign", "cRLSign" },
    issuer_cert = st.root_ca_crt, issuer_key = st.ca_key,
    extensions = { { oid = M.OID_APP_ID, value = app_id }, { oid = OID_USAGE, value = "app:ca" } },
  }
  if not cert then return nil, "Failed to sign App CA: " .. tostring(err) end
  return { key = key, cert = cert }
end

-- CaCert::sign_csr (dstack/ra-tls/src/cert.rs:90-121): the CSR's subject, names and usages;
-- the attestation only when ext_quote; validity from not_before/not_after when given.
local function sign_csr(ca, t, app_id)
  local c = t.config
  local eku = {}
  if c.usage_server_auth then eku[#eku + 1] = "serverAuth" end
  if c.usage_client_auth then eku[#eku + 1] = "clientAuth" end
  local exts = { { oid = M.OID_APP_ID, value = app_id }, { oid = OID_USAGE, value = "app:custom" } }
  if c.ext_quote then exts[#exts + 1] = { oid = A.OID, value = t.attestation } end
  local now = os.time()
  local nb = c.not_before and (c.not_before - now) or 0
  local days = c.not_after and ((c.not_after - (c.not_before or now)) / DAY) or 3650
  local san = {}
  for i, n in ipairs(c.subject_alt_names) do san[i] = n:match("^%a+:") and n or ("DNS:" .. n) end
  local subject = { CN = c.subject }
  if c.org_name then subject.O = c.org_name end
  local pem, err = crypto.cert {
    key = csr.spki_pem(t.pubkey), subject = subject, san = #san > 0 and san or nil,
    ext_key_usage = #eku > 0 and eku or nil, extensions = exts,
    issuer_cert = ca.cert, issuer_key = ca.key, not_before_offset = nb, days = days,
  }
  if not pem then return nil, "Failed to sign certificate: " .. tostring(err) end
  return pem
end

--- The handler body: req = { api_version, csr, signature, vm_config } (bytes raw).
function M.handle(inst, req)
  local ok, err = selfauth.runtime_check(inst)
  if ok == nil then return nil, err end
  local v = req.api_version
  if v ~= 1 and v ~= 2 then return nil, "Unsupported API version: " .. v end
  local t = csr.decode(req.csr, v)
  if not t then return nil, "Failed to parse csr: Codec error" end
  local sok, serr = csr.verify(t, req.csr, req.signature)
  if not sok then return nil, "Failed to verify csr signature: " .. serr end
  if v == 1 then
    -- Upgrading a V1 request re-reads its quote as an attestation (from_tdx_quote).
    local _, derr = A.decode(t.attestation)
    if derr then return nil, "Failed to upgrade csr v1 to v2: " .. derr end
  end
  local verified, verr = A.verify_with_ra_pubkey(t.attestation, t.pubkey)
  if not verified then return nil, "Quote verification failed: " .. verr end
  local allowed, cerr = selfauth.caller_check(inst, verified, false, true, req.vm_config)
  if not allowed then return nil, cerr end
  local app_id = allowed.boot_info.app_id
  local ca, aerr = M.app_ca(inst.state, app_id)
  if not ca then return nil, aerr end
  local leaf, lerr = sign_csr(ca, t, app_id)
  if not leaf then return nil, lerr end
  inst:log("SignCert: issued a certificate for %q to app %s", t.config.subject, crypto.hex(app_id))
  return { certificate_chain = { leaf, ca.cert, inst.state.root_ca_crt } }
end

return M
