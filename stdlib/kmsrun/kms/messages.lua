-- The KMS's prpc message types (kms_rpc.proto, kms-protocol.md sections 3-4), as schemas
-- for lib/json_serde.lua (JSON) and lib/protobuf.lua (binary mode), read by the emulator
-- (emu/kms) and by `kmsrun check` (cli/check/methods.lua). Field order is the proto
-- order, which is also the JSON key order on the wire; `n` is the proto field number.
local S = require "kmsrun.lib.json_serde"

local M = {}

local function msg(name, fields) return S.struct(name, fields) end

M.Empty = nil -- google.protobuf.Empty: the body is ignored

M.BootstrapRequest = msg("BootstrapRequest", { { "domain", "string", n = 1 } })
M.BootstrapResponse = msg("BootstrapResponse", {
  { "ca_pubkey", "bytes", n = 1 }, { "k256_pubkey", "bytes", n = 2 }, { "attestation", "bytes", n = 3 },
})
M.OnboardRequest = msg("OnboardRequest", { { "source_url", "string", n = 1 }, { "domain", "string", n = 2 } })
M.OnboardResponse = msg("OnboardResponse", { { "k256_pubkey", "bytes", n = 1 } })
M.AttestationInfoResponse = msg("AttestationInfoResponse", {
  { "device_id", "bytes", n = 1 }, { "mr_aggregated", "bytes", n = 2 }, { "os_image_hash", "bytes", n = 3 },
  { "tee_variant", "string", n = 4 }, { "site_name", "string", n = 5 }, { "eth_rpc_url", "string", n = 6 },
  { "kms_contract_address", "string", n = 7 }, { "ppid", "bytes", n = 8 },
})

M.GetMetaResponse = msg("GetMetaResponse", {
  { "ca_cert", "string", n = 1 }, { "allow_any_upgrade", "bool", n = 2 }, { "k256_pubkey", "bytes", n = 3 },
  { "bootstrap_info", { message = M.BootstrapResponse }, n = 4 }, { "is_dev", "bool", n = 5 },
  { "gateway_app_id", { optional = "string" }, n = 6 }, { "kms_contract_address", { optional = "string" }, n = 7 },
  { "chain_id", { optional = "u64" }, n = 8 }, { "app_auth_implementation", { optional = "string" }, n = 9 },
})
M.GetTempCaCertResponse = msg("GetTempCaCertResponse", {
  { "temp_ca_cert", "string", n = 1 }, { "temp_ca_key", "string", n = 2 }, { "ca_cert", "string", n = 3 },
})
M.GetKmsKeyRequest = msg("GetKmsKeyRequest", { { "vm_config", "string", n = 1 } })
M.KmsKeys = msg("KmsKeys", { { "ca_key", "string", n = 1 }, { "k256_key", "bytes", n = 2 } })
M.KmsKeyResponse = msg("KmsKeyResponse", {
  { "temp_ca_key", "string", n = 1 }, { "keys", { list = { message = M.KmsKeys } }, n = 2 },
})
M.GetAppKeyRequest = msg("GetAppKeyRequest", { { "api_version", "u32", n = 1 }, { "vm_config", "string", n = 2 } })
M.AppKeyResponse = msg("AppKeyResponse", {
  { "ca_cert", "string", n = 1 }, { "disk_crypt_key", "bytes", n = 2 }, { "env_crypt_key", "bytes", n = 3 },
  { "k256_key", "bytes", n = 4 }, { "k256_signature", "bytes", n = 5 }, { "tproxy_app_id", "string", n = 6 },
  { "gateway_app_id", "string", n = 7 }, { "os_image_hash", "bytes", n = 8 },
})
M.AppId = msg("AppId", { { "app_id", "bytes", n = 1 } })
M.PublicKeyResponse = msg("PublicKeyResponse", {
  { "public_key", "bytes", n = 1 }, { "signature", "bytes", n = 2 }, { "timestamp", "u64", n = 3 },
  { "signature_v1", "bytes", n = 4 },
})
M.SignCertRequest = msg("SignCertRequest", {
  { "api_version", "u32", n = 1 }, { "csr", "bytes", n = 2 }, { "signature", "bytes", n = 3 }, { "vm_config", "string", n = 4 },
})
M.SignCertResponse = msg("SignCertResponse", { { "certificate_chain", { list = "string" }, n = 1 } })

-- The auth webhook's answers (camelCase; fields without a serde default are required).
M.AuthApiInfoResponse = msg("AuthApiInfoResponse", {
  { "status", "string", required = true }, { "kmsContractAddr", "string", required = true },
  { "ethRpcUrl", "string" }, { "gatewayAppId", "string", required = true },
  { "chainId", "u64", required = true }, { "appImplementation", "string", required = true },
})
M.BootResponse = msg("BootResponse", {
  { "isAllowed", "bool", required = true }, { "gatewayAppId", "string", required = true },
  { "reason", "string", required = true },
})

-- dstack-types VmConfig: only os_image_hash matters to the KMS; the rest is accepted.
M.VmConfig = msg("VmConfig", {
  { "os_image_hash", "bytes" }, { "cpu_count", "u32" }, { "memory_size", "u64" },
  { "pci_hole64_size", "u64" }, { "hugepages", "bool" }, { "num_gpus", "u32" }, { "num_nvswitches", "u32" },
})

--- Encodes a response table (bytes raw) as the wire JSON of schema: every field present,
-- bytes as lowercase hex, unset optionals and messages as null.
function M.to_json_value(schema, t)
  local function conv(ty, v)
    if type(ty) == "string" then
      if ty == "bytes" then return v and require("kmsrun.lib.hex").encode(v) or "" end
      if v == nil then
        if ty == "string" then return "" elseif ty == "bool" then return false else return 0 end
      end
      return v
    end
    if ty.optional then
      if v == nil then return S.null end
      return conv(ty.optional, v)
    end
    if ty.message then
      if v == nil then return S.null end
      return M.to_json_value(ty.message, v)
    end
    if ty.list then
      local arr = S.arr()
      for i, e in ipairs(v or {}) do arr[i] = conv(ty.list, e) end
      return arr
    end
    error("messages: bad type", 0)
  end
  local pairs_list = {}
  for i, f in ipairs(schema.fields) do pairs_list[i] = { f[1], conv(f[2], t[f[1]]) } end
  return S.obj(pairs_list)
end

function M.to_json(schema, t)
  return S.encode(M.to_json_value(schema, t))
end

return M
