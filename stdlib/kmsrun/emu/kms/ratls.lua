-- Attested callers of the emulator: what a CVM's guest agent gives an app or a KMS so it can
-- prove itself to a KMS, built from an emulated identity (identity.lua) and the emulated
-- attestation (attestation.lua) — never from a hand-written document.
--   * client_cert: the RA-TLS client certificate of GetKmsKey / GetAppKey callers, signed by
--     the called KMS's temp CA as upstream's generate_ra_cert does
--     (dstack/ra-tls/src/cert.rs:541-575: subject "RA-TLS TEMP Cert", attestation bound to
--     the certificate key by report data);
--   * cert_request: a signed SignCert request over a fresh key (kms/csr.lua), as the guest
--     agent's GetTlsKey asks the KMS (dstack/guest-agent/src/rpc_service.rs:284-308).
local crypto = require "kmsrun.crypto"
local csr = require "kmsrun.kms.csr"
local A = require "kmsrun.emu.kms.attestation"
local identity = require "kmsrun.emu.kms.identity"

local M = {}

local Attester = {}
Attester.__index = Attester

--- An attester for identity inputs (identity.derive's).
function M.attester(inputs)
  local id = identity.derive(inputs)
  return setmetatable({ id = id, summary = identity.summary(id), vm_config = id.vm_config }, Attester)
end

--- The emulated attestation over the SPKI DER of a key (RA-TLS report data, 8.2).
function Attester:attest_key(spki_der)
  return A.build(self.id, A.ratls_report_data(spki_der))
end

--- { cert, key } PEMs: a fresh P-256 key and its certificate signed by ca_cert/ca_key,
-- carrying the attestation under the emulator's OID.
function Attester:client_cert(ca_cert, ca_key)
  local key = crypto.keygen("P-256")
  local info = crypto.key_info(key)
  local cert, err = crypto.cert {
    key = key, subject = { CN = "RA-TLS TEMP Cert" }, issuer_cert = ca_cert, issuer_key = ca_key,
    extensions = { { oid = A.OID, value = self:attest_key(info.public_der) } },
  }
  if not cert then return nil, "cannot sign the RA-TLS client certificate: " .. tostring(err) end
  return { cert = cert, key = key }
end

--- A SignCert request: { api_version, csr, signature, vm_config } (raw bytes) and the new
-- private key. config: CertConfigV2 fields (subject, subject_alt_names, usage_server_auth,
-- usage_client_auth, ext_quote, ext_app_info, not_before, not_after, org_name);
-- version 1 or 2 (default 2); confirm overrides the confirm word.
function Attester:cert_request(config, version, confirm)
  version = version or 2
  local key = crypto.keygen("P-256")
  local spki = crypto.key_info(key).public_der
  local encoded = csr.encode({ confirm = confirm, pubkey = spki, config = config, attestation = self:attest_key(spki) }, version)
  return {
    api_version = version, csr = encoded, signature = csr.sign(key, encoded), vm_config = self.vm_config,
  }, key
end

return M
