-- JSON the way the KMS's Rust stack speaks it (serde_json + serde derive), so the
-- emulator's error texts and encodings match the wire contract (kms-protocol.md 1.3-1.6):
--  * decode(text, schema): typed decoding (serde derive, here; serde_json's reader is
--    lib/json_serde_reader.lua) with serde_json's messages and positions
--    ("invalid type: integer `5`, expected a string at line 1 column 12",
--    "expected value at line 1 column 1", "missing field `x` at ...").
--  * encode(value): compact JSON with a fixed key order (S.obj), "/" not escaped.
-- Field types a schema may use: "string", "bool", "u32", "u64", "bytes" (hex, prpc style),
-- "any" (ignored / raw), { list = T }, { optional = T }.
local S = {}

local W = require "kmsrun.lib.json_writer"
local hex = require "kmsrun.lib.hex"
-- serde_json's reader (state, positioned errors, lexing, untyped values) is its own file.
local R = require "kmsrun.lib.json_serde_reader"
S.null = R.null
local err_here, err_peek, err_custom, fix_position = R.err_here, R.err_peek, R.err_custom, R.fix_position
local skip_ws, ident, parse_string, parse_number = R.skip_ws, R.ident, R.parse_string, R.parse_number
local parse_any, invalid_type, float_text, decode_whole = R.parse_any, R.invalid_type, R.float_text, R.decode_whole

-- Typed deserializers -------------------------------------------------------------

local decode_field

-- prpc's bytes fields: any number of leading lowercase "0x" stripped
-- (trim_start_matches), then the hex crate's decoding and error text.
local function hex_decode(s)
  while s:sub(1, 2) == "0x" do s = s:sub(3) end
  local bytes, err = hex.decode(s)
  if not bytes then err_custom(err) end
  return bytes
end

local scalar = {}

function scalar.string(st)
  local c = skip_ws(st)
  if c == nil then err_peek(st, "EOF while parsing a value") end
  if c == '"' then st.i = st.i + 1; return parse_string(st) end
  invalid_type(st, "a string")
end

function scalar.bool(st)
  local c = skip_ws(st)
  if c == nil then err_peek(st, "EOF while parsing a value") end
  if c == "t" then st.i = st.i + 1; ident(st, "rue"); return true end
  if c == "f" then st.i = st.i + 1; ident(st, "alse"); return false end
  invalid_type(st, "a boolean")
end

local function unsigned(bits)
  local max = bits == 32 and 4294967295 or nil
  local name = "u" .. bits
  return function(st)
    local c = skip_ws(st)
    if c == nil then err_peek(st, "EOF while parsing a value") end
    if c == "-" or c:match("%d") then
      local positive = c ~= "-"
      if not positive then st.i = st.i + 1 end
      local n = parse_number(st, positive)
      if n.kind == "f" then err_here(st, "invalid type: floating point `" .. float_text(n.value) .. "`, expected " .. name) end
      if n.kind == "i" or (max and n.value > max) then
        err_here(st, "invalid value: integer `" .. n.text .. "`, expected " .. name)
      end
      return n.value
    end
    invalid_type(st, name)
  end
end
scalar.u32 = unsigned(32)
scalar.u64 = unsigned(64)

function scalar.bytes(st)
  return hex_decode(scalar.string(st))
end

function scalar.any(st)
  return parse_any(st, 0)
end

local function decode_list(st, elem)
  local c = skip_ws(st)
  if c == nil then err_peek(st, "EOF while parsing a value") end
  if c ~= "[" then invalid_type(st, "a sequence") end
  local arr = setmetatable({}, S.array_mt)
  local ok, e = pcall(function()
    st.i = st.i + 1
    local first = true
    while true do
      c = skip_ws(st)
      if c == "]" then return end
      if c == nil then err_peek(st, "EOF while parsing a list") end
      if not first then
        if c == "," then st.i = st.i + 1; c = skip_ws(st)
        elseif c == nil then err_peek(st, "EOF while parsing a list")
        else err_peek(st, "expected `,` or `]`") end
        if c == "]" then err_peek(st, "trailing comma") end
      end
      if c == nil then err_peek(st, "EOF while parsing a value") end
      first = false
      arr[#arr + 1] = decode_field(st, elem)
    end
  end)
  -- end_seq runs whatever the elements gave (serde_json deserialize_seq)
  local c2 = skip_ws(st)
  local end_err
  if c2 == "]" then st.i = st.i + 1 elseif c2 == nil then end_err = "EOF while parsing a list" else end_err = "trailing characters" end
  if not ok then error(fix_position(st, e), 0) end
  if end_err then err_peek(st, end_err) end
  return arr
end

decode_field = function(st, ty)
  if type(ty) == "string" then
    local f = scalar[ty]
    if not f then error("serde: unknown field type " .. ty, 0) end
    return f(st)
  end
  if ty.list then return decode_list(st, ty.list) end
  if ty.optional then
    local c = skip_ws(st)
    if c == "n" then st.i = st.i + 1; ident(st, "ull"); return nil end
    return decode_field(st, ty.optional)
  end
  if ty.message then -- prost nested messages are Option<T>: null or the struct
    local c = skip_ws(st)
    if c == "n" then st.i = st.i + 1; ident(st, "ull"); return nil end
    return S._decode_struct(st, ty.message)
  end
  if ty.fields then return S._decode_struct(st, ty) end
  error("serde: bad field type", 0)
end

local function default_of(ty)
  if ty == "string" or ty == "bytes" then return "" end
  if ty == "bool" then return false end
  if ty == "u32" or ty == "u64" then return 0 end
  if type(ty) == "table" and ty.list then return setmetatable({}, S.array_mt) end
  return nil
end

-- visit_map of a serde-derived struct: known fields typed, unknown ones parsed and ignored,
-- duplicates rejected, missing fields defaulted (schema.default) or reported in field order.
local function visit_map(st, schema, out)
  local seen = {}
  local first = true
  while true do
    local c = skip_ws(st)
    if c == "}" then break end
    if c == "," and not first then
      st.i = st.i + 1
      c = skip_ws(st)
    elseif c == nil then
      err_peek(st, "EOF while parsing an object")
    elseif not first then
      err_peek(st, "expected `,` or `}`")
    end
    first = false
    if c == "}" then err_peek(st, "trailing comma") end
    if c == nil then err_peek(st, "EOF while parsing a value") end
    if c ~= '"' then err_peek(st, "key must be a string") end
    st.i = st.i + 1
    local key = parse_string(st)
    local ty = schema.by_name[key]
    if ty and seen[key] then err_custom("duplicate field `" .. key .. "`") end
    c = skip_ws(st)
    if c == nil then err_peek(st, "EOF while parsing an object") end
    if c ~= ":" then err_peek(st, "expected `:`") end
    st.i = st.i + 1
    if ty then
      seen[key] = true
      out[key] = decode_field(st, ty)
    else
      parse_any(st, 1)
    end
  end
  for _, f in ipairs(schema.fields) do
    local name, ty, required = f[1], f[2], f.required
    if not seen[name] then
      if required then err_custom("missing field `" .. name .. "`") end
      out[name] = default_of(ty)
    end
  end
end

local function visit_seq(st, schema, out)
  st.i = st.i + 1
  local first = true
  for idx, f in ipairs(schema.fields) do
    local c = skip_ws(st)
    if c == nil then err_peek(st, "EOF while parsing a list") end
    if c == "]" then
      for k = idx, #schema.fields do
        local g = schema.fields[k]
        if g.required then
          err_custom(string.format("invalid length %d, expected struct %s with %d elements", idx - 1, schema.name, #schema.fields))
        end
        out[g[1]] = default_of(g[2])
      end
      return
    end
    if not first then
      if c == "," then st.i = st.i + 1; c = skip_ws(st)
      elseif c == nil then err_peek(st, "EOF while parsing a list")
      else err_peek(st, "expected `,` or `]`") end
      if c == "]" then err_peek(st, "trailing comma") end
    end
    if c == nil then err_peek(st, "EOF while parsing a value") end
    first = false
    out[f[1]] = decode_field(st, f[2])
  end
end

function S._decode_struct(st, schema)
  local c = skip_ws(st)
  if c == nil then err_peek(st, "EOF while parsing a value") end
  local out = {}
  if c == "{" or c == "[" then
    local visit = c == "{" and visit_map or visit_seq
    if c == "{" then st.i = st.i + 1 end
    local ok, e = pcall(visit, st, schema, out)
    -- end_map / end_seq run even when the visitor failed; their own error counts only if it did not
    local close = c == "{" and "}" or "]"
    local d = skip_ws(st)
    local end_err
    if d == close then st.i = st.i + 1
    elseif d == "," then
      end_err = "trailing comma"
      local save = st.i
      st.i = st.i + 1
      if c == "[" and skip_ws(st) ~= "]" then end_err = "trailing characters" end
      st.i = save
    elseif d == nil then end_err = c == "{" and "EOF while parsing an object" or "EOF while parsing a list"
    else end_err = "trailing characters" end
    if not ok then error(fix_position(st, e), 0) end
    if end_err then err_peek(st, end_err) end
    return out
  end
  invalid_type(st, "struct " .. schema.name)
end

--- Declares a message schema: S.struct("BootstrapRequest", {{"domain", "string"}, ...}).
-- A field entry may carry required = true (serde field without a default).
function S.struct(name, fields)
  local by_name = {}
  for _, f in ipairs(fields) do by_name[f[1]] = f[2] end
  return { name = name, fields = fields, by_name = by_name }
end

--- Decodes text as one value of the schema; returns the table or nil, serde error text.
function S.decode(text, schema)
  return decode_whole(text, function(st) return S._decode_struct(st, schema) end)
end

--- Decodes any JSON document; returns the value (S.null for null) or nil, serde error text.
function S.decode_any(text)
  return decode_whole(text, function(st) return parse_any(st, 0) end)
end

-- Encoding (policy SERDE in kmsrun.lib.json_writer) ---------------------------------

S.array_mt = W.ARRAY

--- An object with a fixed key order: S.obj{ {"a", 1}, {"b", S.null} }; a nil value is null.
function S.obj(pairs_list)
  local t, keys = {}, {}
  for i, kv in ipairs(pairs_list) do
    keys[i] = kv[1]
    if kv[2] == nil then t[kv[1]] = S.null else t[kv[1]] = kv[2] end
  end
  return W.object(t, keys)
end

--- Marks t as a JSON array (needed for empty arrays).
S.arr = W.array

--- serde_json's string escaping: quotes, backslash and control characters only.
function S.quote(s) return W.quote(s, W.SERDE) end

--- Compact JSON (serde_json::to_vec).
function S.encode(v)
  local ok, text = pcall(W.encode, v, W.SERDE)
  if not ok then error("serde.encode: " .. text, 0) end
  return text
end

--- The prpc JSON error body (pretty-printed, two-space indent).
function S.error_body(message)
  return "{\n  \"error\": " .. S.quote(message) .. "\n}"
end

return S
