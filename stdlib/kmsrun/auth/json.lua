-- JSON with JavaScript's semantics, for byte-exact compatibility with auth-simple:
-- decoding accepts exactly what JSON.parse accepts and remembers object key order;
-- encoding writes what JSON.stringify writes (no "\/" escaping, JS number formatting,
-- key order as recorded). The embedded cjson cannot do either: it has no array
-- marker, loses key order and escapes "/".
local M = {}

--- The JSON null value (a sentinel, so arrays never have holes).
M.null = setmetatable({}, { __name = "json.null", __tostring = function() return "null" end })

local ARRAY = { __name = "json.array" }
local OBJECT = { __name = "json.object" }
local order = setmetatable({}, { __mode = "k" }) -- object -> list of keys in wire order

--- Marks t (default: a new table) as a JSON array, so that an empty one encodes as [].
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

--- Marks t as a JSON object whose keys are written in the order of the list keys
-- (keys missing from the list follow, sorted).
function M.object(t, keys)
  t = setmetatable(t or {}, OBJECT)
  order[t] = keys
  return t
end

--- The key order recorded for an object (by M.object or M.decode), or nil.
function M.key_order(t)
  return order[t]
end

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

local function is_sequence(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

--- The JSON type of a Lua value, in zod's vocabulary ("undefined" for nil, "nan" for NaN).
-- A plain table is an array if it is a non-empty sequence; a plain empty table is
-- "empty" because Lua cannot tell [] from {} and callers should accept it as either.
function M.kind(v)
  local t = type(v)
  if t == "nil" then return "undefined" end
  if t == "number" then return v ~= v and "nan" or "number" end
  if t ~= "table" then return t end
  if v == M.null then return "null" end
  local mt = getmetatable(v)
  if mt == ARRAY then return "array" end
  if mt == OBJECT then return "object" end
  if next(v) == nil then return "empty" end
  return is_sequence(v) and "array" or "object"
end

--- The keys of an object in wire order: recorded order first, then the rest sorted.
function M.keys(t)
  local keys, seen = {}, {}
  for _, k in ipairs(order[t] or {}) do
    if t[k] ~= nil and not seen[k] then keys[#keys + 1] = k; seen[k] = true end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then
      if type(k) ~= "string" then error("json.encode: object key must be a string, got " .. type(k), 0) end
      rest[#rest + 1] = k
    end
  end
  table.sort(rest)
  table.move(rest, 1, #rest, #keys + 1, keys)
  return keys
end

-- Decoding ----------------------------------------------------------------------------

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

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

function Decoder:string()
  local s, parts = self.s, {}
  local pos = self.pos + 1
  while true do
    local stop = s:find('["\\\0-\31]', pos)
    if not stop then self.pos = #s + 1; self:fail("unterminated string") end
    parts[#parts + 1] = s:sub(pos, stop - 1)
    local c = s:sub(stop, stop)
    if c == '"' then
      self.pos = stop + 1
      return table.concat(parts)
    elseif c == "\\" then
      local e = s:sub(stop + 1, stop + 1)
      if e == "u" then
        local hex = s:match("^%x%x%x%x", stop + 2)
        if not hex then self.pos = stop; self:fail("bad \\u escape") end
        local cp = tonumber(hex, 16)
        pos = stop + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = s:match("^\\u([dD][c-fC-F]%x%x)", pos)
          if lo then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(lo, 16) - 0xDC00)
            pos = pos + 6
          end
        end
        -- A lone surrogate becomes its (WTF-8) bytes: JSON.parse accepts it too.
        parts[#parts + 1] = utf8.char(cp)
      elseif ESCAPES[e] then
        parts[#parts + 1] = ESCAPES[e]
        pos = stop + 2
      else
        self.pos = stop; self:fail("bad escape")
      end
    else
      self.pos = stop; self:fail("control character in string")
    end
  end
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

function Decoder:value(depth)
  if depth > 4000 then self:fail("nesting too deep") end
  self:skip()
  local c = self:peek()
  if c == "{" then
    local obj, keys = {}, {}
    self.pos = self.pos + 1
    self:skip()
    if self:peek() == "}" then self.pos = self.pos + 1; return M.object(obj, keys) end
    while true do
      self:skip()
      if self:peek() ~= '"' then self:fail("expected a string key") end
      local k = self:string()
      self:skip()
      if self:peek() ~= ":" then self:fail("expected ':'") end
      self.pos = self.pos + 1
      local v = self:value(depth + 1)
      -- A repeated key keeps its first position and takes the last value, as in JS.
      if obj[k] == nil then keys[#keys + 1] = k end
      obj[k] = v
      self:skip()
      local d = self:peek()
      self.pos = self.pos + 1
      if d == "}" then return M.object(obj, keys) end
      if d ~= "," then self.pos = self.pos - 1; self:fail("expected ',' or '}'") end
    end
  elseif c == "[" then
    local arr = M.array()
    self.pos = self.pos + 1
    self:skip()
    if self:peek() == "]" then self.pos = self.pos + 1; return arr end
    while true do
      arr[#arr + 1] = self:value(depth + 1)
      self:skip()
      local d = self:peek()
      self.pos = self.pos + 1
      if d == "]" then return arr end
      if d ~= "," then self.pos = self.pos - 1; self:fail("expected ',' or ']'") end
    end
  elseif c == '"' then
    return self:string()
  end
  local num = self.s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", self.pos)
  if num then
    -- The loose pattern above finds the extent; the grammar is checked strictly here.
    local ok = num:match("^-?0[.eE]") or num:match("^-?0$") or num:match("^-?[1-9]")
    ok = ok and (num:match("^-?%d+$") or num:match("^-?%d+%.%d+$") or num:match("^-?%d+[eE][-+]?%d+$")
      or num:match("^-?%d+%.%d+[eE][-+]?%d+$"))
    if not ok then self:fail("bad number '" .. num .. "'") end
    self.pos = self.pos + #num
    return to_js_number(num)
  end
  for word, v in pairs({ ["true"] = true, ["false"] = false, ["null"] = M.null }) do
    if self.s:sub(self.pos, self.pos + #word - 1) == word then
      self.pos = self.pos + #word
      return v
    end
  end
  if c == "" then self:fail("unexpected end of input") end
  if c:match("^[%g ]$") then self:fail("unexpected character '" .. c .. "'") end
  self:fail(string.format("unexpected byte 0x%02x", c:byte()))
end

--- Decodes JSON text: value | nil, message. Arrays and objects come back marked
-- (M.kind tells them apart, M.keys gives object keys in document order); null is M.null.
function M.decode(text)
  if type(text) ~= "string" then error("json.decode: text must be a string, got " .. type(text), 2) end
  local d = setmetatable({ s = text, pos = 1 }, Decoder)
  local ok, v = pcall(function()
    local v = d:value(0)
    d:skip()
    if d.pos <= #text then d:fail("unexpected data after the value") end
    return v
  end)
  if ok then return v end
  if type(v) == "table" and v.json_error then return nil, v.json_error end
  if type(v) == "string" and v:find("stack overflow") then return nil, "invalid JSON: nesting too deep" end
  error(v, 0)
end

-- Encoding ----------------------------------------------------------------------------

local NAMED = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_char(c)
  return NAMED[c] or string.format("\\u%04x", c:byte())
end

local function encode_string(s)
  return '"' .. s:gsub('["\\\0-\31]', escape_char) .. '"'
end

--- Formats a number the way JS's Number.prototype.toString does.
function M.number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if x == 0 then return "0" end
  local sign = x < 0 and "-" or ""
  x = math.abs(x)
  -- Shortest digit string that reads back as the same double.
  local digits, exp
  for p = 1, 17 do
    local s = string.format("%." .. (p - 1) .. "e", x)
    if tonumber(s) == x then
      local m, e = s:match("^(%d[.%d]*)e([-+]%d+)$")
      digits, exp = m:gsub("%.", ""), tonumber(e)
      break
    end
  end
  digits = digits:gsub("0+$", "")
  if digits == "" then digits = "0" end
  local k, n = #digits, exp + 1
  local out
  if k <= n and n <= 21 then
    out = digits .. string.rep("0", n - k)
  elseif 0 < n and n <= 21 then
    out = digits:sub(1, n) .. "." .. digits:sub(n + 1)
  elseif -6 < n and n <= 0 then
    out = "0." .. string.rep("0", -n) .. digits
  else
    local e = n - 1
    out = digits:sub(1, 1) .. (k > 1 and ("." .. digits:sub(2)) or "") .. "e" .. (e >= 0 and "+" or "-") .. math.abs(e)
  end
  return sign .. out
end

local function encode(v, out, sort_keys, seen)
  local kind = M.kind(v)
  if kind == "string" then
    out[#out + 1] = encode_string(v)
  elseif kind == "number" or kind == "nan" then
    out[#out + 1] = M.number(v)
  elseif kind == "boolean" then
    out[#out + 1] = tostring(v)
  elseif kind == "null" then
    out[#out + 1] = "null"
  elseif kind == "array" or kind == "object" or kind == "empty" then
    if seen[v] then error("json.encode: cycle in table", 0) end
    seen[v] = true
    if kind == "array" then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, sort_keys, seen)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local keys = M.keys(v)
      if sort_keys then table.sort(keys) end
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode(v[k], out, sort_keys, seen)
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    error("json.encode: cannot encode a " .. kind, 0)
  end
end

--- Encodes a value as compact JSON. Options: sort_keys (every object's keys sorted
-- bytewise, for canonical output). A plain empty table encodes as {}; mark it with
-- M.array to get [].
function M.encode(v, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "sort_keys" then error("json.encode: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local out = {}
  local ok, err = pcall(encode, v, out, opts.sort_keys, {})
  if not ok then error(err, 2) end
  return table.concat(out)
end

return M
