-- serde_json's reader (serde_json::Deserializer), shared by lib/json_serde.lua's typed
-- decoding: the parse state {s = text, i = index}, its error values with serde_json's
-- line/column positions, the lexing of literals (through lib/json_scan.lua) with
-- serde_json's ErrorCode texts, untyped values, and serde's "invalid type" descriptions.
-- The typed (serde derive) side, the schemas and the public API are in lib/json_serde.lua.
local W = require "kmsrun.lib.json_writer"
local scan = require "kmsrun.lib.json_scan"

local R = {}
R.null = W.null

-- Errors ------------------------------------------------------------------------

local Err = {}
Err.__index = Err
Err.__tostring = function(e) return e.msg end

-- Line/column of byte index k in serde_json's sense (column = bytes since the last newline).
local function position_of(s, k)
  local line, last_nl = 1, 0
  local i = 1
  while true do
    local nl = s:find("\n", i, true)
    if not nl or nl > k then break end
    line, last_nl, i = line + 1, nl, nl + 1
  end
  return line, k - last_nl
end

local function raise(st, msg, at)
  local line, col = position_of(st.s, at)
  error(setmetatable({ msg = string.format("%s at line %d column %d", msg, line, col), positioned = true }, Err), 0)
end

-- self.error(): at the last consumed byte.
local function err_here(st, msg) raise(st, msg, st.i - 1) end
-- self.peek_error(): at the byte being looked at.
local function err_peek(st, msg) raise(st, msg, math.min(#st.s, st.i)) end
-- A custom error (serde::de::Error::custom); it gets its position later (fix_position).
local function err_custom(msg) error(setmetatable({ msg = msg, positioned = false }, Err), 0) end

local function fix_position(st, e)
  if getmetatable(e) == Err and not e.positioned then
    local line, col = position_of(st.s, st.i - 1)
    e.msg = string.format("%s at line %d column %d", e.msg, line, col)
    e.positioned = true
  end
  return e
end

-- Lexing ------------------------------------------------------------------------

local function peek(st)
  local b = st.s:byte(st.i)
  return b and string.char(b) or nil
end

local function skip_ws(st)
  local _, e = st.s:find("^[ \n\t\r]*", st.i)
  st.i = e + 1
  return peek(st)
end

local function ident(st, rest)
  for k = 1, #rest do
    local c = peek(st)
    if c == nil then err_peek(st, "EOF while parsing a value") end
    st.i = st.i + 1
    if c ~= rest:sub(k, k) then err_here(st, "expected ident") end
  end
end

-- serde_json's ErrorCode texts for what the shared scanner finds (lib/json_scan.lua).
local SCAN_ERRORS = { eof = "EOF while parsing a string", control = "control character (\\u0000-\\u001F) found while parsing a string",
  escape = "invalid escape", hex = "invalid escape", hex_end = "unexpected end of hex escape",
  surrogate = "lone leading surrogate in hex escape" }
local NUMBER_ERRORS = { eof = "EOF while parsing a value", number = "invalid number" }

-- Parses a string whose opening quote is already consumed.
local function parse_string(st)
  local text
  text, st.i = scan.string(st.s, st.i, function(kind, at) raise(st, SCAN_ERRORS[kind], at) end)
  return text
end

-- Parses a number (a leading '-' already consumed when not positive).
-- Returns {kind = "u"|"i"|"f", value = n, text = literal}.
local function parse_number(st, positive)
  local digits, float
  digits, st.i, float = scan.number(st.s, st.i, function(kind, at) raise(st, NUMBER_ERRORS[kind], at) end)
  local text = (positive and "" or "-") .. digits
  if not float then
    local v = math.tointeger(tonumber(text))
    if v and tostring(v) == text:gsub("^%-0$", "0") then return { kind = positive and "u" or "i", value = v, text = text } end
    if positive and #text <= 20 and (#text < 20 or text <= "18446744073709551615") then
      return { kind = "u", value = tonumber(text), text = text } -- u64 beyond i64: kept as float value
    end
  end
  local v = tonumber(text)
  if v == math.huge or v == -math.huge then err_here(st, "number out of range") end
  return { kind = "f", value = v, text = text }
end

local parse_any

local function parse_array_any(st, depth)
  local arr = {}
  st.i = st.i + 1
  local first = true
  while true do
    local c = skip_ws(st)
    if c == "]" then st.i = st.i + 1; return arr end
    if c == nil then err_peek(st, "EOF while parsing a list") end
    if not first then
      if c == "," then
        st.i = st.i + 1
        c = skip_ws(st)
        if c == "]" then err_peek(st, "trailing comma") end
      elseif c == nil then err_peek(st, "EOF while parsing a list")
      else err_peek(st, "expected `,` or `]`") end
    end
    if c == nil then err_peek(st, "EOF while parsing a value") end
    first = false
    arr[#arr + 1] = parse_any(st, depth + 1)
  end
end

local function parse_object_any(st, depth)
  local obj = {}
  st.i = st.i + 1
  local first = true
  while true do
    local c = skip_ws(st)
    if c == "}" then st.i = st.i + 1; return obj end
    if c == nil then err_peek(st, "EOF while parsing an object") end
    if not first then
      if c == "," then st.i = st.i + 1; c = skip_ws(st)
      elseif c == nil then err_peek(st, "EOF while parsing an object")
      else err_peek(st, "expected `,` or `}`") end
    end
    if c == "}" then err_peek(st, "trailing comma") end
    if c == nil then err_peek(st, "EOF while parsing a value") end
    if c ~= '"' then err_peek(st, "key must be a string") end
    first = false
    st.i = st.i + 1
    local k = parse_string(st)
    c = skip_ws(st)
    if c == nil then err_peek(st, "EOF while parsing an object") end
    if c ~= ":" then err_peek(st, "expected `:`") end
    st.i = st.i + 1
    obj[k] = parse_any(st, depth + 1)
  end
end

-- Parses any value; returns it as Lua data (R.null for null).
parse_any = function(st, depth)
  if depth > 128 then err_here(st, "recursion limit exceeded") end
  local c = skip_ws(st)
  if c == nil then err_peek(st, "EOF while parsing a value") end
  if c == "n" then st.i = st.i + 1; ident(st, "ull"); return R.null end
  if c == "t" then st.i = st.i + 1; ident(st, "rue"); return true end
  if c == "f" then st.i = st.i + 1; ident(st, "alse"); return false end
  if c == "-" then st.i = st.i + 1; return parse_number(st, false).value end
  if c:match("%d") then return parse_number(st, true).value end
  if c == '"' then st.i = st.i + 1; return parse_string(st) end
  if c == "[" then return parse_array_any(st, depth) end
  if c == "{" then return parse_object_any(st, depth) end
  err_peek(st, "expected value")
end

-- How serde describes an unexpected value (serde::de::Unexpected's Display).
local function rust_debug_str(s)
  return '"' .. s:gsub('[%c"\\]', function(ch)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
    return named[ch] or string.format("\\u{%x}", ch:byte())
  end) .. '"'
end

local float_text = W.rust_float

-- peek_invalid_type: consumes the offending value (scalars only) and describes it.
local function unexpected(st)
  local c = peek(st)
  if c == "n" then st.i = st.i + 1; ident(st, "ull"); return "null" end
  if c == "t" then st.i = st.i + 1; ident(st, "rue"); return "boolean `true`" end
  if c == "f" then st.i = st.i + 1; ident(st, "alse"); return "boolean `false`" end
  if c == "-" or (c and c:match("%d")) then
    local positive = c ~= "-"
    if not positive then st.i = st.i + 1 end
    local n = parse_number(st, positive)
    if n.kind == "f" then return "floating point `" .. float_text(n.value) .. "`" end
    return "integer `" .. n.text .. "`"
  end
  if c == '"' then st.i = st.i + 1; return "string " .. rust_debug_str(parse_string(st)) end
  if c == "[" then return "sequence" end
  if c == "{" then return "map" end
  err_peek(st, "expected value")
end

local function invalid_type(st, expected)
  local what = unexpected(st)
  err_here(st, "invalid type: " .. what .. ", expected " .. expected)
end

-- Runs parse(st) over the whole text: its value, or nil and the serde error text.
local function decode_whole(text, parse)
  local st = { s = text, i = 1 }
  local ok, v = pcall(function()
    local out = parse(st)
    if skip_ws(st) ~= nil then err_peek(st, "trailing characters") end
    return out
  end)
  if ok then return v end
  if getmetatable(v) == Err then return nil, v.msg end
  error(v, 0)
end

R.Err, R.err_here, R.err_peek, R.err_custom, R.fix_position = Err, err_here, err_peek, err_custom, fix_position
R.peek, R.skip_ws, R.ident, R.parse_string, R.parse_number = peek, skip_ws, ident, parse_string, parse_number
R.parse_any, R.invalid_type, R.float_text, R.decode_whole = parse_any, invalid_type, float_text, decode_whole

return R
