-- Short one-line renderings of DSL arguments for `kmsrun plan`: handles by name,
-- policies by description, tables as Lua constructors with sorted keys. Values
-- of secret variables and of secret() never appear: they are replaced by a
-- marker naming where they came from.
local unknown = require "kmsrun.cli.check.unknown"

local M = {}

local MAX_STRING = 200

local function quote(s)
  if #s > MAX_STRING then s = s:sub(1, MAX_STRING) .. "..." end
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

--- Renders v; secrets maps a secret string to its marker.
function M.value(v, secrets, depth)
  depth = depth or 0
  local t = type(v)
  if unknown.is(v) then return tostring(v) end
  if t == "string" then
    for s, marker in pairs(secrets or {}) do
      if s ~= "" and v:find(s, 1, true) then return marker end
    end
    return quote(v)
  end
  if t ~= "table" then return tostring(v) end
  local kind = rawget(v, "__kind")
  if kind == "kms" or kind == "auth" then return v.name end
  if kind == "policy" then return v.description end
  if kind == "response" then return "<response of " .. tostring(rawget(v, "__kms")) .. " " .. tostring(rawget(v, "method")) .. ">" end
  if depth >= 3 then return "{...}" end
  local parts = {}
  local n = #v
  for i = 1, n do parts[#parts + 1] = M.value(v[i], secrets, depth + 1) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. M.value(k, secrets, depth + 1) .. "]")
    parts[#parts + 1] = key .. "=" .. M.value(v[k], secrets, depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- "a, b, c" for a list of handles.
function M.names(list)
  local out = {}
  for _, h in ipairs(list) do out[#out + 1] = type(h) == "table" and rawget(h, "name") or tostring(h) end
  return table.concat(out, ", ")
end

return M
