-- JSON with JavaScript's semantics, for byte-exact compatibility with auth-simple:
-- decoding accepts exactly what JSON.parse accepts and remembers object key order;
-- encoding writes what JSON.stringify writes (no "\/" escaping, JS number formatting,
-- key order as recorded). The embedded cjson cannot do either: it has no array
-- marker, loses key order and escapes "/".
local W = require "kmsrun.lib.json_writer"
local scan = require "kmsrun.lib.json_scan"

local M = {}

--- The JSON null value (cjson's, which kmsrun.lib.json shares), so arrays never have holes.
M.null = W.null

--- Marks t (default: a new table) as a JSON array, so that an empty one encodes as [].
M.array = W.array

--- Marks t as a JSON object whose keys are written in the order of the list keys
-- (keys missing from the list follow, sorted).
M.object = W.object

--- The key order recorded for an object (by M.object, M.decode or kmsrun.lib.json), or nil.
M.key_order = W.key_order

--- Builds an ordered object from a flat list: M.ordered("a", 1, "b", 2).
function M.ordered(...)
  local t, keys = {}, {}
  for i = 1, select("#", ...), 2 do
    local k, v = select(i, ...)
    keys[#keys + 1] = k
    t[k] = v
  end
  return M.object(t, keys)
end

--- The JSON type of a Lua value, in zod's vocabulary ("undefined" for nil, "nan" for NaN).
-- A plain table is an array if it is a non-empty sequence; a plain empty table is
-- "empty" because Lua cannot tell [] from {} and callers should accept it as either.
function M.kind(v)
  if v == nil then return "undefined" end
  return W.kind(v)
end

--- The keys of an object in wire order: recorded order first, then the rest sorted.
function M.keys(t)
  local ok, keys = pcall(W.keys, t)
  if not ok then error("json: " .. keys, 0) end
  return keys
end

--- A deep copy of a Lua value in this module's representation: arrays and objects
-- marked (from kmsrun.lib.json's markers, or by shape for plain tables), kmsrun.lib.json's
-- "__order" turned into key order. Plain empty tables stay plain (either kind).
function M.import(v)
  local kind = M.kind(v)
  if kind == "array" then
    local a = M.array()
    for i = 1, #v do a[i] = M.import(v[i]) end
    return a
  elseif kind == "object" then
    local o, keys = {}, M.keys(v)
    for _, k in ipairs(keys) do o[k] = M.import(v[k]) end
    return M.object(o, keys)
  elseif kind == "empty" then
    return {}
  end
  return v
end

-- Decoding ----------------------------------------------------------------------------

local Decoder = {}
Decoder.__index = Decoder

function Decoder:fail(what)
  error({ json_error = string.format("invalid JSON at byte %d: %s", self.pos, what) }, 0)
end

function Decoder:skip()
  self.pos = self.s:find("[^ \t\r\n]", self.pos) or #self.s + 1
end

function Decoder:peek()
  return self.s:sub(self.pos, self.pos)
end

-- JSON.parse's SyntaxError names no kind; kmsrun words its own, at the byte.
local SCAN_ERRORS = { eof = "unexpected end of input", control = "control character in string",
  escape = "bad escape", hex = "bad \\u escape", number = "bad number" }

function Decoder:scan_fail()
  return function(kind, at)
    self.pos = at
    self:fail(SCAN_ERRORS[kind])
  end
end

function Decoder:string()
  local text
  text, self.pos = scan.string(self.s, self.pos + 1, self:scan_fail(), "wtf8")
  return text
end

-- JS numbers are doubles: integers beyond 2^53 round like JSON.parse rounds them.
local function to_js_number(text)
  local n = tonumber(text)
  if math.type(n) == "integer" and (n > 2 ^ 53 or n < -2 ^ 53) then n = tonumber(text .. ".0") end
  if math.type(n) == "float" and n == math.floor(n) and n >= -2 ^ 53 and n <= 2 ^ 53 then
    n = math.tointeger(n) or n
  end
  return n
end

local LITERALS = { ["true"] = true, ["false"] = false, ["null"] = M.null }

-- The scalar at the current position (string, number, literal); anything else is an error.
function Decoder:scalar()
  local c = self:peek()
  if c == '"' then return self:string() end
  if c == "-" or c:match("^%d$") then
    local sign = c == "-" and "-" or ""
    local digits, after = scan.number(self.s, self.pos + #sign, self:scan_fail())
    self.pos = after
    return to_js_number(sign .. digits)
  end
  for word, v in pairs(LITERALS) do
    if self.s:sub(self.pos, self.pos + #word - 1) == word then
      self.pos = self.pos + #word
      return v
    end
  end
  if c == "" then self:fail("unexpected end of input") end
  if c:match("^[%g ]$") then self:fail("unexpected character '" .. c .. "'") end
  self:fail(string.format("unexpected byte 0x%02x", c:byte()))
end

-- An object key and its colon.
function Decoder:key()
  self:skip()
  if self:peek() ~= '"' then self:fail("expected a string key") end
  local k = self:string()
  self:skip()
  if self:peek() ~= ":" then self:fail("expected ':'") end
  self.pos = self.pos + 1
  return k
end

-- Iterative, with an explicit stack: JSON.parse takes any nesting depth, and a body
-- nested deeper than Lua's call depth must still get auth-simple's answer.
function Decoder:value()
  local stack = {}
  while true do
    self:skip()
    local c, v = self:peek(), nil
    if c == "{" or c == "[" then
      self.pos = self.pos + 1
      self:skip()
      local close = c == "{" and "}" or "]"
      if self:peek() == close then
        self.pos = self.pos + 1
        v = c == "{" and M.object({}, {}) or M.array()
      elseif c == "{" then
        stack[#stack + 1] = { obj = {}, keys = {}, key = self:key() }
      else
        stack[#stack + 1] = { arr = M.array() }
      end
    else
      v = self:scalar()
    end
    -- A finished value goes into its container; closing brackets finish containers.
    while v ~= nil do
      local top = stack[#stack]
      if not top then return v end
      if top.arr then
        top.arr[#top.arr + 1] = v
      else
        -- A repeated key keeps its first position and takes the last value, as in JS.
        if top.obj[top.key] == nil then top.keys[#top.keys + 1] = top.key end
        top.obj[top.key] = v
      end
      v = nil
      self:skip()
      local d = self:peek()
      self.pos = self.pos + 1
      if d == "," then
        if top.obj then top.key = self:key() end
      elseif d == (top.arr and "]" or "}") then
        stack[#stack] = nil
        v = top.arr or M.object(top.obj, top.keys)
      else
        self.pos = self.pos - 1
        self:fail(top.arr and "expected ',' or ']'" or "expected ',' or '}'")
      end
    end
  end
end

--- Decodes JSON text: value | nil, message. Arrays and objects come back marked
-- (M.kind tells them apart, M.keys gives object keys in document order); null is M.null.
function M.decode(text)
  if type(text) ~= "string" then error("json.decode: text must be a string, got " .. type(text), 2) end
  local d = setmetatable({ s = text, pos = 1 }, Decoder)
  local ok, v = pcall(function()
    local v = d:value()
    d:skip()
    if d.pos <= #text then d:fail("unexpected data after the value") end
    return v
  end)
  if ok then return v end
  if type(v) == "table" and v.json_error then return nil, v.json_error end
  error(v, 0)
end

-- Encoding ----------------------------------------------------------------------------

--- Formats a number the way JS's Number.prototype.toString does.
M.number = W.js_number

-- Canonical output (every object's keys sorted bytewise), for comparing configs.
local SORTED = setmetatable({ sort_keys = true }, { __index = W.JAVASCRIPT })

--- Encodes a value as compact JSON, as JSON.stringify does (policy JAVASCRIPT in
-- kmsrun.lib.json_writer). Options: sort_keys (every object's keys sorted bytewise,
-- for canonical output). A plain empty table encodes as {}; mark it with M.array to get [].
function M.encode(v, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "sort_keys" then error("json.encode: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local ok, text = pcall(W.encode, v, opts.sort_keys and SORTED or W.JAVASCRIPT)
  if not ok then error("json.encode: " .. text, 2) end
  return text
end

return M
