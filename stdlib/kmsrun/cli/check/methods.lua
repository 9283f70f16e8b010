-- The prpc methods a runbook may call with rpc(), for `kmsrun check`: the KMS's
-- Onboard service (served before `finish`) and its KMS service (served over TLS
-- after it). Request and response fields come from the message schemas in
-- sim/messages.lua (the proto, kms-protocol.md sections 3-4), so a misspelt
-- field is caught from the same definitions the emulator decodes with.
local api = require "kmsrun.dsl.api"
local messages = require "kmsrun.kms.messages"

local M = {}

-- method -> {mode = the KMS mode that serves it, request =, response = schema names}
M.list = {
  { "Onboard.Bootstrap", "onboard", "BootstrapRequest", "BootstrapResponse" },
  { "Onboard.Onboard", "onboard", "OnboardRequest", "OnboardResponse" },
  { "Onboard.GetAttestationInfo", "onboard", nil, "AttestationInfoResponse" },
  { "Onboard.Finish", "onboard", nil, nil },
  { "KMS.GetMeta", "runtime", nil, "GetMetaResponse" },
  { "KMS.GetTempCaCert", "runtime", nil, "GetTempCaCertResponse" },
  { "KMS.GetKmsKey", "runtime", "GetKmsKeyRequest", "KmsKeyResponse" },
  { "KMS.GetAppKey", "runtime", "GetAppKeyRequest", "AppKeyResponse" },
  { "KMS.SignCert", "runtime", "SignCertRequest", "SignCertResponse" },
  { "KMS.GetAppEnvEncryptPubKey", "runtime", "AppId", "PublicKeyResponse" },
}

M.names = {}
M.by_name = {}
for _, m in ipairs(M.list) do
  M.names[#M.names + 1] = m[1]
  M.by_name[m[1]] = { name = m[1], mode = m[2], request = m[3] and messages[m[3]], response = m[4] and messages[m[4]] }
end

--- The closest known method: by full name, else by the part after the service
-- (so "KMS.Bootstrap" and "GetMeta" find "Onboard.Bootstrap" and "KMS.GetMeta").
function M.suggest(method)
  local best = api.suggest(method, M.names)
  if best then return best end
  local short = method:match("([^.]*)$")
  local shorts = {}
  for _, n in ipairs(M.names) do shorts[#shorts + 1] = n:match("%.(.*)$") end
  local s = api.suggest(short, shorts)
  if not s then return nil end
  for _, n in ipairs(M.names) do if n:match("%.(.*)$") == s then return n end end
end

--- The field names of a schema, in proto order.
function M.field_names(schema)
  local list = {}
  for _, f in ipairs(schema and schema.fields or {}) do list[#list + 1] = f[1] end
  return list
end

--- Checks a request body against the method's request message; returns an error message or nil.
function M.check_body(m, body)
  if type(body) ~= "table" then return nil end -- raw JSON text: sent as is
  for k in pairs(body) do
    if not m.request then
      return string.format("%s takes no request fields (got '%s')", m.name, tostring(k))
    end
    if not m.request.by_name[k] then
      local best = api.suggest(tostring(k), M.field_names(m.request))
      return string.format("%s has no request field '%s' (%s)", m.name, tostring(k),
        best and ("did you mean '" .. best .. "'?") or ("fields: " .. table.concat(M.field_names(m.request), ", ")))
    end
  end
  return nil
end

return M
