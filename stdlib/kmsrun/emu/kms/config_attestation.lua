-- [core.attestation] checked as the real KMS checks it at startup:
-- AttestationVerifierConfig, RootCaPaths and CollateralUrls deny unknown fields
-- (dstack-attest/src/attestation.rs:33-56, dstack-types/src/lib.rs:1120-1127), and
-- AttestationVerifier::load refuses root_ca paths unless
-- insecure_allow_external_trust_anchors is true, and reads each root it is given
-- (attestation.rs:69-98, 191-198). The KMS loads the verifier before it serves
-- anything (onboard_service.rs:55-58, "failed to load attestation verifier").
local M = {}

local FIELDS = {
  [""] = { "insecure_allow_external_trust_anchors", "urls", "root_ca" },
  urls = { "pccs", "amd_kds" },
  root_ca = { "tdx", "gcp_tpm", "aws_nitro_enclave", "aws_nitro_tpm", "sev_snp_milan", "sev_snp_genoa", "sev_snp_turin" },
}
local ROOT_NAMES = { tdx = "TDX", gcp_tpm = "GCP TPM", aws_nitro_enclave = "AWS Nitro Enclave",
  aws_nitro_tpm = "AWS NitroTPM", sev_snp_milan = "SEV-SNP Milan", sev_snp_genoa = "SEV-SNP Genoa",
  sev_snp_turin = "SEV-SNP Turin" }

local function unknown(t, section)
  local known = {}
  for _, k in ipairs(FIELDS[section]) do known[k] = true end
  for k in pairs(t) do
    if not known[k] then
      -- serde's wording for deny_unknown_fields (the figment key path may differ).
      return string.format("invalid configuration: unknown field `%s`, expected one of `%s` for key \"core.attestation%s.%s\"",
        k, table.concat(FIELDS[section], "`, `"), section == "" and "" or ("." .. section), k)
    end
  end
end

--- Checks the parsed section (config errors: the KMS does not start). Returns true or nil, err.
function M.check(a)
  if a == nil then return true end
  if type(a) ~= "table" then return nil, "invalid configuration: core.attestation must be a table" end
  local err = unknown(a, "")
  if err then return nil, err end
  if a.insecure_allow_external_trust_anchors ~= nil and type(a.insecure_allow_external_trust_anchors) ~= "boolean" then
    return nil, "invalid configuration: core.attestation.insecure_allow_external_trust_anchors must be a boolean"
  end
  for _, section in ipairs({ "urls", "root_ca" }) do
    local t = a[section]
    if t ~= nil then
      if type(t) ~= "table" then return nil, "invalid configuration: core.attestation." .. section .. " must be a table" end
      err = unknown(t, section)
      if err then return nil, err end
      for k, v in pairs(t) do
        if type(v) ~= "string" then return nil, string.format("invalid configuration: core.attestation.%s.%s must be a string", section, k) end
      end
    end
  end
  return true
end

--- AttestationVerifier::load's checks: true, or nil and the startup error.
function M.load_verifier(a)
  a = a or {}
  local roots = a.root_ca or {}
  if next(roots) and a.insecure_allow_external_trust_anchors ~= true then
    return nil, "failed to load attestation verifier: external attestation trust anchors are configured but "
      .. "insecure_allow_external_trust_anchors is false"
  end
  for _, k in ipairs(FIELDS.root_ca) do
    local path = roots[k]
    if path then
      local f = io.open(path, "rb")
      if not f then
        return nil, string.format("failed to load attestation verifier: failed to read %s root CA from %s", ROOT_NAMES[k], path)
      end
      f:close()
    end
  end
  return true
end

return M
