-- Binary prpc mode (kms-protocol.md 1.2): requests without JSON mode are protobuf, and so
-- are their answers, errors included (a message with the string field #1). A small proto3
-- codec over the schemas of sim/messages.lua; decode errors read like prost's.
local P = {}

local WIRE_NAMES = { [0] = "Varint", [1] = "SixtyFourBit", [2] = "LengthDelimited", [3] = "StartGroup", [4] = "EndGroup", [5] = "ThirtyTwoBit" }

local function varint(n)
  local out = {}
  repeat
    local b = n & 0x7f
    n = n >> 7
    if n ~= 0 then b = b | 0x80 end
    out[#out + 1] = string.char(b)
  until n == 0
  return table.concat(out)
end

local function wire_of(ty)
  if type(ty) == "string" then
    if ty == "string" or ty == "bytes" then return 2 end
    return 0
  end
  if ty.optional then return wire_of(ty.optional) end
  return 2
end

local encode_message

local function encode_value(ty, v)
  if type(ty) == "string" then
    if ty == "string" or ty == "bytes" then return varint(#v) .. v end
    if ty == "bool" then return varint(v and 1 or 0) end
    return varint(math.tointeger(v) or 0)
  end
  if ty.optional then return encode_value(ty.optional, v) end
  if ty.message then
    local body = encode_message(ty.message, v)
    return varint(#body) .. body
  end
  error("protobuf: bad type", 0)
end

local function is_default(ty, v)
  if v == nil then return true end
  if type(ty) ~= "string" then return false end
  if ty == "string" or ty == "bytes" then return v == "" end
  if ty == "bool" then return v == false end
  return v == 0
end

encode_message = function(schema, t)
  local out = {}
  for _, f in ipairs(schema.fields) do
    local name, ty, n = f[1], f[2], f.n
    local v = t[name]
    if type(ty) == "table" and ty.list then
      for _, e in ipairs(v or {}) do
        out[#out + 1] = varint((n << 3) | wire_of(ty.list)) .. encode_value(ty.list, e)
      end
    elseif type(ty) == "table" and (ty.optional or ty.message) then
      if v ~= nil then out[#out + 1] = varint((n << 3) | wire_of(ty)) .. encode_value(ty, v) end
    elseif not is_default(ty, v) then
      out[#out + 1] = varint((n << 3) | wire_of(ty)) .. encode_value(ty, v)
    end
  end
  return table.concat(out)
end

--- Encodes a table (bytes raw) as a protobuf message of schema.
function P.encode(schema, t) return encode_message(schema, t or {}) end

--- The binary error body: prpc's ProtoError { string message = 1; }.
function P.error_body(message)
  return varint((1 << 3) | 2) .. varint(#message) .. message
end

-- Decoding ------------------------------------------------------------------------

local function fail(stack, msg)
  error({ pb = true, msg = "failed to decode Protobuf message: " .. (stack and (stack .. ": ") or "") .. msg }, 0)
end

local function read_varint(st, stack)
  local n, shift = 0, 0
  while true do
    if st.i > st.last then fail(stack, "buffer underflow") end
    local b = st.s:byte(st.i)
    st.i = st.i + 1
    n = n | ((b & 0x7f) << shift)
    if b < 0x80 then return n end
    shift = shift + 7
    if shift >= 70 then fail(stack, "invalid varint") end
  end
end

local function read_len(st, stack)
  local len = read_varint(st, stack)
  if len < 0 or st.i + len - 1 > st.last then fail(stack, "buffer underflow") end
  local s = st.s:sub(st.i, st.i + len - 1)
  st.i = st.i + len
  return s
end

local decode_message

local function skip_field(st, wire, stack)
  if wire == 0 then read_varint(st, stack)
  elseif wire == 1 then st.i = st.i + 8
  elseif wire == 5 then st.i = st.i + 4
  elseif wire == 2 then read_len(st, stack)
  elseif wire == 3 then
    while true do
      if st.i > st.last then fail(stack, "buffer underflow") end
      local key = read_varint(st, stack)
      local w = key & 7
      if w == 4 then return end
      skip_field(st, w, stack)
    end
  elseif wire == 4 then fail(stack, "unexpected end group tag")
  else fail(stack, "invalid wire type value: " .. wire) end
  if st.i - 1 > st.last then fail(stack, "buffer underflow") end
end

local function decode_value(ty, st, stack, wire)
  local expected = wire_of(ty)
  if wire ~= expected then
    fail(stack, string.format("invalid wire type: %s (expected %s)", WIRE_NAMES[wire] or tostring(wire), WIRE_NAMES[expected]))
  end
  if type(ty) == "string" then
    if ty == "string" then
      local s = read_len(st, stack)
      if not utf8.len(s) then fail(stack, "invalid string value: data is not UTF-8 encoded") end
      return s
    end
    if ty == "bytes" then return read_len(st, stack) end
    local v = read_varint(st, stack)
    if ty == "bool" then return v ~= 0 end
    if ty == "u32" then return v & 0xffffffff end
    return v
  end
  if ty.optional then return decode_value(ty.optional, st, stack, wire) end
  if ty.message then
    local body = read_len(st, stack)
    return decode_message(ty.message, body)
  end
  error("protobuf: bad type", 0)
end

decode_message = function(schema, data)
  local st = { s = data, i = 1, last = #data }
  local by_num = {}
  for _, f in ipairs(schema.fields) do by_num[f.n] = f end
  local out = {}
  for _, f in ipairs(schema.fields) do
    local ty = f[2]
    if type(ty) == "table" and ty.list then out[f[1]] = {}
    elseif type(ty) == "string" then
      out[f[1]] = (ty == "string" or ty == "bytes") and "" or (ty == "bool" and false or 0)
    end
  end
  while st.i <= st.last do
    local key = read_varint(st, nil)
    local num, wire = key >> 3, key & 7
    if wire > 5 then fail(nil, "invalid wire type value: " .. wire) end
    if num == 0 then fail(nil, "invalid tag value: 0") end
    local f = by_num[num]
    if not f then
      skip_field(st, wire, nil)
    else
      local stack = schema.name .. "." .. f[1]
      local ty = f[2]
      if type(ty) == "table" and ty.list then
        local list = out[f[1]]
        list[#list + 1] = decode_value(ty.list, st, stack, wire)
      else
        out[f[1]] = decode_value(ty, st, stack, wire)
      end
    end
  end
  return out
end

--- Decodes protobuf bytes as schema; returns a table (bytes raw) or nil, prost-like message.
function P.decode(schema, data)
  local ok, v = pcall(decode_message, schema, data)
  if ok then return v end
  if type(v) == "table" and v.pb then return nil, v.msg end
  error(v, 0)
end

return P
