-- JSON with deterministic output: object keys sorted (or in a given order),
-- explicit arrays, optional pretty printing. Decoding is cjson's.
local cjson = require "cjson.safe"

local M = {}
M.null = cjson.null

local array_mt = { __jsontype = "array" }
local ordered_mt = { __jsontype = "object" }

--- Marks t (default a new table) as a JSON array, so an empty one encodes as [].
function M.array(t) return setmetatable(t or {}, array_mt) end

--- An object whose keys encode in the order given: M.ordered({"a", 1, "b", 2}).
function M.ordered(pairs_list)
  local t = setmetatable({ __order = {} }, ordered_mt)
  for i = 1, #pairs_list, 2 do
    t.__order[#t.__order + 1] = pairs_list[i]
    t[pairs_list[i]] = pairs_list[i + 1]
  end
  return t
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt == array_mt then return true end
  if mt == ordered_mt then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n > 0 and n == #t
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- JSON text is UTF-8: a byte that is not part of valid UTF-8 (a binary or
-- truncated body) is written as \u00XX, i.e. read back as that Latin-1 character.
local function utf8_only(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then out[#out + 1] = s:sub(i) break end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = string.format("\\u%04x", s:byte(bad))
    i = bad + 1
  end
  return table.concat(out)
end

local function quote(s)
  return '"' .. utf8_only((s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end))) .. '"'
end
M.quote = quote

local function encode(v, indent, depth, out)
  local t = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    -- Decoded answers can hold them (1e400 overflows, cjson accepts nan and inf):
    -- written as the JSON numbers that read back the same, and null for NaN.
    if v ~= v then out[#out + 1] = "null"
    elseif v == math.huge then out[#out + 1] = "1e999"
    elseif v == -math.huge then out[#out + 1] = "-1e999"
    else out[#out + 1] = math.type(v) == "integer" and tostring(v) or string.format("%.14g", v) end
  elseif t == "string" then
    out[#out + 1] = quote(v)
  elseif t == "table" then
    local nl = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    local sep = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl
        encode(v[i], indent, depth + 1, out)
      end
      out[#out + 1] = close .. "]"
    else
      -- Only json.ordered() objects carry their key order; in any other table
      -- (a decoded response) "__order" is just a key.
      local keys = getmetatable(v) == ordered_mt and rawget(v, "__order") or nil
      if not keys then
        keys = {}
        for k in pairs(v) do
          if type(k) ~= "string" then error("json.encode: object keys must be strings, got " .. type(k)) end
          keys[#keys + 1] = k
        end
        table.sort(keys)
      end
      if #keys == 0 then out[#out + 1] = "{}" return end
      out[#out + 1] = "{"
      local first = true
      for _, k in ipairs(keys) do
        if v[k] ~= nil then
          if not first then out[#out + 1] = "," end
          first = false
          out[#out + 1] = nl .. quote(k) .. sep
          encode(v[k], indent, depth + 1, out)
        end
      end
      out[#out + 1] = close .. "}"
    end
  else
    error("json.encode: cannot encode a " .. t)
  end
end

--- Encodes v; opts.pretty indents with two spaces.
function M.encode(v, opts)
  local out = {}
  encode(v, opts and opts.pretty and "  " or nil, 0, out)
  return table.concat(out)
end

--- Decodes text; returns value | nil, err.
function M.decode(text)
  if type(text) ~= "string" then return nil, "json.decode: expected a string" end
  local v, err = cjson.decode(text)
  if v == nil and err then return nil, err end
  return v
end

return M
