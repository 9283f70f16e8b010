-- Plausible stand-ins for what the real actions return, so a case body keeps
-- running in the dry run: a response whose body has every field of the
-- method's response message (strings, numbers, nested messages), and whose
-- reads of a field the message lacks are mistakes (a misspelt field is nil at
-- run time, and the case fails far from the typo).
local api = require "kmsrun.dsl.api"
local unknown = require "kmsrun.cli.check.unknown"
local methods = require "kmsrun.cli.check.methods"

local M = {}

-- The fields of prpc.call's response (prpc.lua).
local RESPONSE_FIELDS = { "status", "body", "raw", "error", "ok", "time", "method", "url", "request", "certs", "server_cert" }

local body

local function value_for(ty, label, mistake)
  if type(ty) == "table" then
    if ty.message then return body(ty.message, label, mistake) end
    if ty.optional then return value_for(ty.optional, label, mistake) end
    if ty.list then return {} end
    return unknown.new(label)
  end
  if ty == "string" or ty == "bytes" then return "<" .. label .. ">" end
  if ty == "u32" or ty == "u64" then return 0 end
  if ty == "bool" then return false end
  return unknown.new(label)
end

function body(schema, label, mistake)
  local t = {}
  for _, f in ipairs(schema.fields) do t[f[1]] = value_for(f[2], label .. "." .. f[1], mistake) end
  return setmetatable(t, { __index = function(_, k)
    -- An error answer's body is {error = "..."}: reading it is always fine.
    if k == "error" or type(k) ~= "string" or k:sub(1, 2) == "__" then return nil end
    local names = methods.field_names(schema)
    local best = api.suggest(k, names)
    mistake(string.format("%s has no field '%s' (%s)", schema.name, k,
      best and ("did you mean '" .. best .. "'?") or ("fields: " .. table.concat(names, ", "))))
    return unknown.new(label .. "." .. k)
  end })
end

--- The stand-in for rpc(h, method): m is the method's record (or nil when unknown);
-- mistake(message) records a mistake at the current runbook line.
function M.response(h, method, m, mistake, request)
  local label = h.name .. " " .. method
  local res = {
    __kind = "response", __kms = h.name, method = method, url = "<" .. label .. " url>", certs = {},
    status = unknown.new(label .. " status"), ok = unknown.new(label .. " ok"),
    error = unknown.new(label .. " error"), raw = "", time = 0, request = request,
    server_cert = unknown.new(label .. " server_cert"),
    body = (m and m.response) and body(m.response, label, mistake) or unknown.new(label .. " body"),
  }
  return setmetatable(res, { __index = function(_, k)
    if type(k) ~= "string" or k:sub(1, 2) == "__" then return nil end
    local best = api.suggest(k, RESPONSE_FIELDS)
    mistake(string.format("an rpc response has no field '%s' (%s)", k,
      best and ("did you mean '" .. best .. "'?") or ("fields: " .. table.concat(RESPONSE_FIELDS, ", "))))
    return unknown.new(label .. "." .. k)
  end })
end

--- What capture_attestation stores on a handle.
function M.attestation(h)
  local a = {}
  for _, f in ipairs(methods.field_names(methods.by_name["Onboard.GetAttestationInfo"].response)) do
    a[f] = "<" .. f .. " of " .. h.name .. ">"
  end
  return a
end

return M
