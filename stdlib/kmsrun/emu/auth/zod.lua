-- The subset of zod 3 that auth-simple's schemas use (string, number, boolean, array,
-- object, record, optional, default), reproducing its parse results and its issue
-- objects exactly: auth-simple answers a bad request with zod's issue list verbatim,
-- and a config that fails its schema is replaced by the defaults.
local json = require "kmsrun.lib.json_js"

local M = {}
local Schema = {}
Schema.__index = Schema

local INVALID = setmetatable({}, { __name = "zod.INVALID" })

local function new(kind, fields)
  fields = fields or {}
  fields.kind = kind
  return setmetatable(fields, Schema)
end

function M.string() return new("string") end
function M.number() return new("number") end
function M.boolean() return new("boolean") end
function M.array(item) return new("array", { item = item }) end
function M.record(value) return new("record", { value = value }) end

--- An object schema from an ordered list of {key, schema} pairs: zod checks keys in
-- declaration order, which is the order of the issues it reports.
function M.object(fields) return new("object", { fields = fields }) end

local function copy(s)
  local c = {}
  for k, v in pairs(s) do c[k] = v end
  return setmetatable(c, Schema)
end

--- Missing (nil) is accepted and stays missing.
function Schema:optional()
  local c = copy(self)
  c.is_optional = true
  return c
end

--- Missing (nil) becomes the value (copied, then parsed like an input).
function Schema:default(value)
  local c = copy(self)
  c.has_default, c.default_value = true, value
  return c
end

local function deep_copy(v)
  if type(v) ~= "table" or v == json.null then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  return setmetatable(c, getmetatable(v))
end

local function issue(path, expected, received, issues)
  local p = json.array()
  for i, seg in ipairs(path) do p[i] = seg end
  issues[#issues + 1] = json.ordered(
    "code", "invalid_type",
    "expected", expected,
    "received", received,
    "path", p,
    "message", received == "undefined" and "Required" or ("Expected " .. expected .. ", received " .. received))
end

local function with(path, seg)
  local p = table.move(path, 1, #path, 1, {})
  p[#p + 1] = seg
  return p
end

-- A key that is a canonical array index ("0", "7", not "07"): JS enumerates these first,
-- ascending, then the other keys in insertion order.
local function array_index(k)
  if not k:match("^0$") and not k:match("^[1-9]%d*$") then return nil end
  local n = tonumber(k)
  return (n and n < 4294967295) and n or nil
end

--- Object keys in JavaScript's enumeration order (Object.entries, for ... in).
function M.js_keys(obj)
  local idx, rest = {}, {}
  for _, k in ipairs(json.keys(obj)) do
    if array_index(k) then idx[#idx + 1] = k else rest[#rest + 1] = k end
  end
  table.sort(idx, function(a, b) return array_index(a) < array_index(b) end)
  table.move(rest, 1, #rest, #idx + 1, idx)
  return idx
end

local parse

local PARSERS = {}

function PARSERS.string(_, v, path, issues, kind)
  if kind == "string" then return v end
  issue(path, "string", kind, issues)
  return INVALID
end

function PARSERS.number(_, v, path, issues, kind)
  if kind == "number" then return v end
  issue(path, "number", kind, issues)
  return INVALID
end

function PARSERS.boolean(_, v, path, issues, kind)
  if kind == "boolean" then return v end
  issue(path, "boolean", kind, issues)
  return INVALID
end

function PARSERS.array(s, v, path, issues, kind)
  if kind ~= "array" and kind ~= "empty" then
    issue(path, "array", kind, issues)
    return INVALID
  end
  local out, bad = json.array(), false
  for i = 1, #v do
    -- zod reports array positions 0-based, as JS indexes them.
    local x = parse(s.item, v[i], with(path, i - 1), issues)
    if x == INVALID then bad = true else out[i] = x end
  end
  return bad and INVALID or out
end

function PARSERS.object(s, v, path, issues, kind)
  if kind ~= "object" and kind ~= "empty" then
    issue(path, "object", kind, issues)
    return INVALID
  end
  local out, keys, bad = {}, {}, false
  for _, field in ipairs(s.fields) do
    local key = field[1]
    local x = parse(field[2], v[key], with(path, key), issues)
    if x == INVALID then
      bad = true
    elseif x ~= nil then
      out[key] = x
      keys[#keys + 1] = key
    end
  end
  return bad and INVALID or json.object(out, keys)
end

function PARSERS.record(s, v, path, issues, kind)
  if kind ~= "object" and kind ~= "empty" then
    issue(path, "object", kind, issues)
    return INVALID
  end
  local out, keys, bad = {}, {}, false
  for _, key in ipairs(M.js_keys(v)) do
    local x = parse(s.value, v[key], with(path, key), issues)
    if x == INVALID then
      bad = true
    elseif key ~= "__proto__" then -- zod never assigns __proto__ on its output object
      out[key] = x
      keys[#keys + 1] = key
    end
  end
  return bad and INVALID or json.object(out, keys)
end

function parse(s, v, path, issues)
  if v == nil then
    if s.has_default then
      v = deep_copy(s.default_value)
    elseif s.is_optional then
      return nil
    end
  end
  return PARSERS[s.kind](s, v, path, issues, json.kind(v))
end

--- Parses value against the schema: the parsed copy (defaults applied, unknown keys
-- dropped, tables marked as JSON arrays/objects) | nil, issues (zod's issue objects,
-- in zod's order).
function Schema:parse(value)
  local issues = json.array()
  local out = parse(self, value, {}, issues)
  if out == INVALID then return nil, issues end
  return out
end

--- The ZodError body auth-simple sends with a 400: {"success":false,"error":{"issues":…,"name":"ZodError"}}.
function M.error_body(issues)
  return json.ordered("success", false, "error", json.ordered("issues", issues, "name", "ZodError"))
end

--- A one-line summary of issues, e.g. `chainId: Expected number, received string`.
function M.summary(issues)
  local parts = {}
  for _, i in ipairs(issues) do
    local segs = {}
    for _, seg in ipairs(i.path) do segs[#segs + 1] = tostring(seg) end
    parts[#parts + 1] = (#segs > 0 and (table.concat(segs, ".") .. ": ") or "") .. i.message
  end
  return table.concat(parts, "; ")
end

--- Marks the tables of a plain Lua value as JSON arrays or objects where the schema
-- says which, so that an empty list encodes as [] and an empty map as {} (Lua cannot
-- tell them apart). Returns a marked deep copy; values outside the schema keep the
-- encoder's defaults.
function Schema:shape(value)
  if type(value) ~= "table" or value == json.null then return value end
  local kind = json.kind(value)
  local c = {}
  for k, x in pairs(value) do c[k] = x end
  if self.kind == "array" and (kind == "array" or kind == "empty") then
    for i, x in ipairs(c) do c[i] = self.item:shape(x) end
    return json.array(c)
  elseif self.kind == "object" and (kind == "object" or kind == "empty") then
    for _, field in ipairs(self.fields) do
      if c[field[1]] ~= nil then c[field[1]] = field[2]:shape(c[field[1]]) end
    end
    return json.object(c, json.key_order(value))
  elseif self.kind == "record" and (kind == "object" or kind == "empty") then
    for k, x in pairs(c) do c[k] = self.value:shape(x) end
    return json.object(c, json.key_order(value))
  end
  return deep_copy(value)
end

return M
