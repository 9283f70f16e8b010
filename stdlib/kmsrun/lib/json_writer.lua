-- The one JSON encoder of the stdlib, and the one way to say what a Lua table is in
-- JSON (an array, an object with a key order, or a plain table judged by its shape).
-- kmsrun speaks three byte-exact dialects; each is a policy below, defined beside
-- the reason it exists. The modules that use them:
--   kmsrun.lib.json        (KMSRUN) files kmsrun writes: reports, transcripts, events
--   kmsrun.lib.json_js   (JAVASCRIPT) auth-simple's answers, as JSON.stringify writes them
--   kmsrun.lib.json_serde   (SERDE) the emulator's answers, as serde_json writes them
-- Decoding: cjson for what kmsrun reads (fast, no exactness owed); the two byte-exact
-- decoders share their lexical layer (lib/json_scan.lua: strings, numbers) and keep
-- their own walks, because the walks are what differ: JSON.parse's is untyped,
-- iterative (any depth) and records key order; serde's is driven by the message
-- schema, and its "invalid type"/"missing field" errors point at schema positions.
local M = {}

M.null = require("cjson").null

-- Markers ---------------------------------------------------------------------------

--- The array marker: a table with it encodes as [] even when empty.
M.ARRAY = { __name = "json.array", __jsontype = "array" }
--- The object marker: a table with it encodes as {} even when empty, keys in its order.
M.OBJECT = { __name = "json.object", __jsontype = "object" }
-- Key order lives beside the object, not in it, so no key name is reserved.
local order = setmetatable({}, { __mode = "k" })

--- Marks t (default: a new table) as an array.
function M.array(t) return setmetatable(t or {}, M.ARRAY) end

--- Marks t as an object whose keys are written in the order of the list keys
-- (keys missing from the list follow, sorted).
function M.object(t, keys)
  t = setmetatable(t or {}, M.OBJECT)
  order[t] = keys or {}
  return t
end

--- The key order recorded for an object by M.object, or nil.
function M.key_order(t) return order[t] end

local function is_sequence(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

--- The JSON type of a Lua value: "null" (nil or null), "boolean", "number", "nan",
-- "string", "array", "object", "empty" (a plain empty table: Lua cannot tell [] from
-- {}, so each dialect decides), or the Lua type name of anything JSON cannot hold.
function M.kind(v)
  local t = type(v)
  if v == nil or v == M.null then return "null" end
  if t == "number" then return v ~= v and "nan" or "number" end
  if t ~= "table" then return t end
  local mt = getmetatable(v)
  if mt == M.ARRAY then return "array" end
  if mt == M.OBJECT then return "object" end
  if next(v) == nil then return "empty" end
  return is_sequence(v) and "array" or "object"
end

--- The keys of an object in wire order: its recorded order first, then the rest sorted.
-- Keys whose value is nil are left out. A key that is not a string is an error unless
-- any_keys is set (then it sorts, and is written, as its text).
function M.keys(t, any_keys)
  local keys, seen = {}, {}
  for _, k in ipairs(order[t] or {}) do
    if t[k] ~= nil and not seen[k] then keys[#keys + 1] = k; seen[k] = true end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then
      if type(k) ~= "string" and not any_keys then error("object keys must be strings, got " .. type(k), 0) end
      rest[#rest + 1] = k
    end
  end
  if any_keys then table.sort(rest, function(a, b) return tostring(a) < tostring(b) end)
  else table.sort(rest) end
  table.move(rest, 1, #rest, #keys + 1, keys)
  return keys
end

-- Strings ---------------------------------------------------------------------------

local NAMED = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_char(c) return NAMED[c] or string.format("\\u%04x", c:byte()) end

-- A byte that is not part of valid UTF-8 (a binary or truncated body) becomes \u00XX,
-- i.e. reads back as that Latin-1 character: the text stays valid JSON.
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

--- Quotes s under a policy's string rules (policy.escape: the Lua character class to
-- escape; policy.utf8_only: escape bytes that are not UTF-8).
function M.quote(s, policy)
  local body = s:gsub(policy.escape, escape_char)
  if policy.utf8_only then body = utf8_only(body) end
  return '"' .. body .. '"'
end

-- Numbers ---------------------------------------------------------------------------

--- The shortest text that reads back as the same double, laid out the way
-- JavaScript's Number.prototype.toString lays it out (ECMA-262 Number::toString).
function M.js_number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if x == 0 then return "0" end
  local sign = x < 0 and "-" or ""
  x = math.abs(x)
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

--- A float the way Rust's Display writes an f64 inside serde_json messages and output.
function M.rust_float(v)
  if v == math.floor(v) and math.abs(v) < 1e16 then return string.format("%.1f", v) end
  return (string.format("%.17g", v):gsub("(%..-)0+$", "%1"))
end

-- Policies --------------------------------------------------------------------------

--- Files kmsrun writes (report.json, transcript, events): read by people, jq and
-- diff, so objects have sorted keys unless ordered, an optional two-space indent, a
-- binary body stays valid UTF-8, DEL and every other control character is escaped
-- (these texts reach terminals), and numbers that decoded answers can hold (1e400
-- overflows, cjson accepts nan and inf) are written so they read back the same.
M.KMSRUN = {
  escape = '[%c"\\]',
  utf8_only = true,
  empty = "{}",
  number = function(v)
    if v ~= v then return "null" end
    if v == math.huge then return "1e999" end
    if v == -math.huge then return "-1e999" end
    return math.type(v) == "integer" and tostring(v) or string.format("%.14g", v)
  end,
}

--- auth-simple's bodies, byte for byte: what JSON.stringify writes (no "\/",
-- JavaScript's number layout, NaN and infinities as null, keys in insertion order).
M.JAVASCRIPT = {
  escape = '["\\\0-\31]',
  empty = "{}",
  number = M.js_number,
}

--- The KMS's bodies, byte for byte: what serde_json::to_vec writes. The emulator's
-- messages hold repeated fields as plain Lua lists, and an empty Vec is [] on the
-- wire, so a plain empty table is an array here. Integral floats are u64 values kept
-- beyond 2^63; a non-string key is written as its text, as serde's map keys are.
M.SERDE = {
  escape = '[%z\1-\31"\\]',
  empty = "[]",
  any_keys = true,
  number = function(v)
    if math.type(v) == "integer" then return tostring(v) end
    if v == math.floor(v) and math.abs(v) < 2 ^ 64 and v >= 0 then return string.format("%.0f", v) end
    return M.rust_float(v)
  end,
}

-- The walk ----------------------------------------------------------------------------

local function encode(v, p, indent, depth, seen, out)
  local kind = M.kind(v)
  if kind == "empty" then kind = p.empty == "[]" and "array" or "object" end
  if kind == "null" then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = tostring(v)
  elseif kind == "number" or kind == "nan" then
    out[#out + 1] = p.number(v)
  elseif kind == "string" then
    out[#out + 1] = M.quote(v, p)
  elseif kind == "array" or kind == "object" then
    if seen[v] then error("cycle in table", 0) end
    seen[v] = true
    local nl = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    if kind == "array" then
      if #v == 0 then out[#out + 1] = "[]"
      else
        out[#out + 1] = "["
        for i = 1, #v do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          encode(v[i], p, indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "]"
      end
    else
      local keys = M.keys(v, p.any_keys)
      if p.sort_keys then table.sort(keys) end
      if #keys == 0 then out[#out + 1] = "{}"
      else
        local sep = indent and ": " or ":"
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl .. M.quote(tostring(k), p) .. sep
          encode(v[k], p, indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    error("cannot encode a " .. kind, 0)
  end
end

--- Encodes v under policy p. indent (a string) pretty-prints; errors are raised as
-- plain messages ("cycle in table", "cannot encode a function", ...).
function M.encode(v, p, indent)
  local out = {}
  encode(v, p, indent, 0, {}, out)
  return table.concat(out)
end

return M
