-- The TOML writer: turns a Lua table into TOML text (keys sorted, scalars before
-- sub-tables), for the files kmsrun generates. Its reader is lib/toml.lua, which
-- re-exports encode and quote so callers need only one module.
local W = require "kmsrun.lib.json_writer"

local M = {}

local function is_array(v)
  return type(v) == "table" and W.kind(v) == "array"
end

local function enc_key(k)
  if type(k) ~= "string" then error("toml.encode: keys must be strings, got " .. type(k), 0) end
  if k:match("^[A-Za-z0-9_%-]+$") then return k end
  return M.quote(k)
end

--- A TOML basic string literal for s.
function M.quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ["\b"] = "\\b", ["\f"] = "\\f" }
    return named[c] or string.format("\\u%04X", c:byte())
  end) .. '"'
end

local enc_value

local function enc_inline_table(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = enc_key(k) .. " = " .. enc_value(t[k]) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

enc_value = function(v)
  local tv = type(v)
  if tv == "string" then return M.quote(v) end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    local s = string.format("%.17g", v)
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
  end
  if tv == "table" then
    if is_array(v) then
      local parts = {}
      for i = 1, #v do parts[i] = enc_value(v[i]) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    return enc_inline_table(v)
  end
  error("toml.encode: cannot encode a " .. tv, 0)
end

local function is_table_array(v)
  if not is_array(v) or #v == 0 then return false end
  for _, e in ipairs(v) do if type(e) ~= "table" or is_array(e) then return false end end
  return true
end

local function enc_section(out, t, path)
  local keys, subs = {}, {}
  for k, v in pairs(t) do
    if type(v) == "table" and not is_array(v) then subs[#subs + 1] = k
    elseif is_table_array(v) then subs[#subs + 1] = k
    else keys[#keys + 1] = k end
  end
  table.sort(keys)
  table.sort(subs)
  for _, k in ipairs(keys) do out[#out + 1] = enc_key(k) .. " = " .. enc_value(t[k]) end
  for _, k in ipairs(subs) do
    local p = path and (path .. "." .. enc_key(k)) or enc_key(k)
    local v = t[k]
    if is_table_array(v) then
      for _, e in ipairs(v) do
        if #out > 0 then out[#out + 1] = "" end
        out[#out + 1] = "[[" .. p .. "]]"
        enc_section(out, e, p)
      end
    else
      if #out > 0 then out[#out + 1] = "" end
      out[#out + 1] = "[" .. p .. "]"
      enc_section(out, v, p)
    end
  end
end

--- Encodes a table as TOML text (keys sorted; scalars before sub-tables).
function M.encode(t)
  if type(t) ~= "table" then error("toml.encode: value must be a table, got " .. type(t), 2) end
  local out = {}
  local ok, err = pcall(enc_section, out, t, nil)
  if not ok then error(err, 2) end
  return table.concat(out, "\n") .. "\n"
end

return M
