-- Secrets never reach disk in clear. Values known to be secret (private keys
-- returned by RPCs, credentials, anything a runbook marks secret) are tainted;
-- every sink (evidence files, events, the terminal: report/terminal.lua) passes
-- its values through here, which replaces each secret — in every form it takes in
-- practice (report/redact_forms.lua) — by a marker carrying its SHA-256, so runs
-- can still be compared. Structured output is scrubbed value by value before it is
-- encoded (M.value), never as encoded text: a secret that is JSON or XML syntax
-- (`"status"`) then cannot cut a key or a quote out of the file.
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local forms_of = require("kmsrun.report.redact_forms").of
local json_writer = require "kmsrun.lib.json_writer"

local M = {}

-- Response fields that hold private key material.
M.secret_fields = {
  temp_ca_key = true, ca_key = true, k256_key = true, disk_crypt_key = true, env_crypt_key = true,
  private_key = true, key = false,
}

local secrets = {}   -- list of {forms = {...}, marker = "..."}
local known = {}     -- raw secret -> true
-- Every form of every secret by its first PREFIX bytes: {form, marker}, longest
-- first. A scan of a text looks each position up once, whatever the number of
-- secrets (a find per form made each scrub cost ~1 µs per form: 2.5 ms a string
-- with 100 keys).
local index = {}
local PREFIX = 4
local pairs2 = {}    -- first two bytes (b1 * 256 + b2) of every form: a cheap test before the lookup
local count = 0      -- forms in the index

local MARKER_PREFIX = "[REDACTED sha256:"
local MARKER_PATTERN = "%[REDACTED sha256:%x+%]"

function M.marker(value)
  return MARKER_PREFIX .. crypto.hex(crypto.sha256(value)) .. "]"
end

-- Shorter values cannot be scrubbed without mangling ordinary text; `secret()`
-- refuses them rather than pretend.
M.MIN_LENGTH = 4

--- Taints value: from now on every sink replaces it (in each of its forms,
-- report/redact_forms.lua) by its marker.
function M.add(value)
  if type(value) ~= "string" or #value < M.MIN_LENGTH or known[value] then return end
  -- Text every marker holds ("REDACTED", "sha256:"...) is no secret: scrubbing it
  -- would only mangle the markers.
  if MARKER_PREFIX:find(value, 1, true) then return end
  known[value] = true
  local s = { forms = forms_of(value, M.MIN_LENGTH), marker = M.marker(value) }
  secrets[#secrets + 1] = s
  -- Across secrets too: at each position the longest form wins, so a secret
  -- containing another (a text holding a key) is replaced whole before the
  -- shorter one could cut it and leave the rest in clear.
  for _, form in ipairs(s.forms) do
    local p = form:sub(1, PREFIX)
    local b1, b2 = form:byte(1, 2)
    pairs2[b1 * 256 + b2] = true
    local list = index[p] or {}
    index[p] = list
    list[#list + 1] = { form, s.marker }
    table.sort(list, function(a, b)
      if #a[1] ~= #b[1] then return #a[1] > #b[1] end
      return a[1] < b[1]
    end)
    count = count + 1
  end
end

-- The longest form starting at i, or nil; markers already in the text are skipped
-- by the callers (a secret's hex may occur in a digest).
local function form_at(text, i)
  local b1, b2 = text:byte(i, i + 1)
  if not pairs2[b1 * 256 + b2] then return nil end
  local list = index[text:sub(i, i + PREFIX - 1)]
  if not list then return nil end
  for _, f in ipairs(list) do
    local form = f[1]
    if #form == PREFIX or text:sub(i, i + #form - 1) == form then return f end
  end
  return nil
end

-- Calls on_hit(i, f) for each non-overlapping hit, left to right; stops when it returns true.
local function scan(text, on_hit)
  local i, n = 1, #text - PREFIX + 1
  while i <= n do
    if text:byte(i) == 91 then -- "[": step over a marker whole
      local _, e = text:find("^%[REDACTED sha256:%x+%]", i)
      if e then i = e + 1 goto continue end
    end
    do
      local f = form_at(text, i)
      if f then
        if on_hit(i, f) then return end
        i = i + #f[1]
      else
        i = i + 1
      end
    end
    ::continue::
  end
end

--- Replaces every tainted secret in text.
function M.scrub(text)
  if type(text) ~= "string" or count == 0 or #text < PREFIX then return text end
  local out, last = nil, 1
  scan(text, function(i, f)
    out = out or {}
    out[#out + 1] = text:sub(last, i - 1)
    out[#out + 1] = f[2]
    last = i + #f[1]
  end)
  if not out then return text end
  out[#out + 1] = text:sub(last)
  return table.concat(out)
end

local function looks_private(s)
  return type(s) == "string" and s:find("-----BEGIN [%u ]*PRIVATE KEY-----") ~= nil
end

local BEGIN = "%-%-%-%-%-BEGIN [%u ]*PRIVATE KEY%-%-%-%-%-"
local END = "%-%-%-%-%-END [%u ]*PRIVATE KEY%-%-%-%-%-"

-- Taints every private-key PEM block inside a longer text (an error message, a
-- log line, a non-JSON body); a block cut short (a truncated body) is tainted
-- from its BEGIN line to the end of the text.
local function taint_blocks(text)
  local start = 1
  while true do
    local b = text:find(BEGIN, start)
    if not b then return end
    local _, e = text:find(END, b)
    M.add(text:sub(b, e or #text))
    if not e then return end
    start = e + 1
  end
end

-- Taints what a response holds: secret fields, and private-key PEMs wherever they are
-- (a value that is exactly one key is tainted whole, so it becomes one marker).
local function taint(value, depth)
  if type(value) == "string" then
    if looks_private(value) then
      if value:match("^%s*" .. BEGIN) and value:find(END .. "%s*$") and select(2, value:gsub(BEGIN, "")) == 1 then
        M.add(value)
      end
      taint_blocks(value)
    end
    return
  end
  if type(value) ~= "table" or depth > 10000 then return end
  for k, v in pairs(value) do
    if type(v) == "string" and M.secret_fields[k] and v ~= "" then M.add(v) else taint(v, depth + 1) end
  end
end

--- Returns a copy of a decoded response with every secret replaced by its marker,
-- after tainting its secret fields and private-key PEMs. All fields are tainted
-- before any is copied: a key in one field and its hex in another are both caught.
function M.response(value)
  taint(value, 0)
  if type(value) == "string" then return M.scrub(value) end
  return M.value(value, true)
end

--- A copy of v with every string (keys included) scrubbed; tables keep their
-- metatable (json.array markers) and key order (json.object). Non-strings as is.
-- copy: copy even when nothing is tainted (the caller keeps the original as it is).
function M.value(v, copy)
  if count == 0 and not copy then return v end
  local seen = {}
  local function walk(x)
    if type(x) == "string" then return M.scrub(x) end
    if type(x) ~= "table" then return x end
    if seen[x] then return seen[x] end
    local copy = {}
    seen[x] = copy
    for k, val in pairs(x) do copy[walk(k)] = walk(val) end
    local mt = getmetatable(x)
    local order = json_writer.key_order(x)
    if order then
      local names = {}
      for i, n in ipairs(order) do names[i] = walk(n) end
      json_writer.object(copy, names)
    elseif mt then
      setmetatable(copy, mt)
    end
    return copy
  end
  return walk(v)
end

--- Every secret seen so far (raw), for the post-run leak scan.
function M.all()
  local list = {}
  for v in pairs(known) do list[#list + 1] = v end
  return list
end

--- Scans text for any tainted secret form; returns the first marker found or nil.
-- A marker is not a leak, even where a secret's hex happens to occur in its digest.
function M.find_leak(text)
  if count == 0 or type(text) ~= "string" then return nil end
  local hit
  scan(text, function(_, f) hit = f[2] return true end)
  return hit
end

-- Every string (keys and values) of a decoded JSON value, scanned one by one.
local function leak_in_value(v)
  if type(v) == "string" then return M.find_leak(v) end
  if type(v) ~= "table" then return nil end
  for k, x in pairs(v) do
    local hit = leak_in_value(k) or leak_in_value(x)
    if hit then return hit end
  end
  return nil
end

--- Scans a file's content for a leak the way it was written: a JSON document or a
-- JSON-lines stream value by value (the syntax around values is no secret's: a
-- secret `"status"` must not make every report a leak), anything else as text.
-- name: the file's name (".json", ".ndjson" decide).
function M.find_leak_in(name, text)
  if count == 0 then return nil end
  if name:match("%.json$") then
    local v = json.decode(text)
    if v ~= nil then return leak_in_value(v) end
  elseif name:match("%.ndjson$") then
    for line in text:gmatch("[^\n]+") do
      local v = json.decode(line)
      local hit
      if v ~= nil then hit = leak_in_value(v) else hit = M.find_leak(line) end
      if hit then return hit end
    end
    return nil
  end
  return M.find_leak(text)
end

return M
