-- One kms.toml for every target: the emulator and the real dstack-kms read the
-- same settings (kms-protocol.md 2.1), so they are configured identically.
-- The keys and their types follow upstream's KmsConfig (dstack/kms/src/config.rs:35-79)
-- and AttestationVerifierConfig (dstack/dstack-attest/src/attestation.rs:33-56);
-- tests/lua/test_kms_config.lua checks every target's output against that key set.
local toml = require "kmsrun.lib.toml"

local M = {}

-- [core.attestation]: upstream rejects unknown keys there (deny_unknown_fields,
-- attestation.rs:36,48) and refuses to start when a root_ca is given without
-- insecure_allow_external_trust_anchors (attestation.rs:91-95), so both are checked
-- here, before a KMS ever reads the file.
local URL_KEYS = { pccs = true, amd_kds = true }
local ROOT_KEYS = { tdx = true, gcp_tpm = true, aws_nitro_enclave = true, aws_nitro_tpm = true,
  sev_snp_milan = true, sev_snp_genoa = true, sev_snp_turin = true }

local function attestation(a)
  a = a or {}
  local out = { insecure_allow_external_trust_anchors = a.insecure_allow_external_trust_anchors == true }
  for k in pairs(a) do
    assert(k == "insecure_allow_external_trust_anchors" or k == "urls" or k == "root_ca",
      "kms_config: unknown attestation key '" .. tostring(k) .. "'")
  end
  if a.urls then
    out.urls = {}
    for k, v in pairs(a.urls) do
      assert(URL_KEYS[k], "kms_config: unknown attestation.urls key '" .. tostring(k) .. "'")
      out.urls[k] = assert(type(v) == "string" and v, "kms_config: attestation.urls." .. k .. " must be a string")
    end
  end
  if a.root_ca then
    out.root_ca = {}
    for k, v in pairs(a.root_ca) do
      assert(ROOT_KEYS[k], "kms_config: unknown attestation.root_ca key '" .. tostring(k) .. "'")
      out.root_ca[k] = assert(type(v) == "string" and v, "kms_config: attestation.root_ca." .. k .. " must be a path")
    end
    assert(not next(out.root_ca) or out.insecure_allow_external_trust_anchors,
      "kms_config: attestation.root_ca needs insecure_allow_external_trust_anchors = true (the KMS refuses to start otherwise)")
  end
  return out
end

--- The configuration table. spec: cert_dir, port, address, webhook_url,
-- site_name, enforce_self_authorization (default true), attest_rpc_cert (default true),
-- attestation ({ insecure_allow_external_trust_anchors =, urls = { pccs = }, root_ca = { tdx = } },
-- default: the vendor roots, as upstream's kms.toml),
-- image_download_url (turns on OS image verification; with {OS_IMAGE_HASH}).
function M.table(spec)
  local cert_dir = assert(spec.cert_dir, "kms_config: cert_dir is required")
  local function flag(v) if v == nil then return true end return v end
  return {
    rpc = {
      address = spec.address or "127.0.0.1",
      port = spec.port or 8000,
      tls = {
        key = cert_dir .. "/rpc.key",
        certs = cert_dir .. "/rpc.crt",
        mutual = { ca_certs = cert_dir .. "/tmp-ca.crt", mandatory = false },
      },
    },
    core = {
      cert_dir = cert_dir,
      site_name = spec.site_name or "",
      enforce_self_authorization = flag(spec.enforce_self_authorization),
      attest_rpc_cert = flag(spec.attest_rpc_cert),
      attestation = attestation(spec.attestation),
      auth_api = { type = "webhook", webhook = { url = assert(spec.webhook_url, "kms_config: webhook_url is required") } },
      onboard = {
        enabled = true,
        auto_bootstrap_domain = "",
        address = spec.address or "127.0.0.1",
        port = spec.port or 8000,
      },
      -- Test deployments cannot serve OS images for download (gotcha 15), unless the
      -- target serves some itself (sim: kms() verify_images).
      image = { verify = spec.image_download_url ~= nil, download_url = spec.image_download_url },
    },
  }
end

--- The kms.toml text.
function M.toml(spec)
  return toml.encode(M.table(spec))
end

return M
