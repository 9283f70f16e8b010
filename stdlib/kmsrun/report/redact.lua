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
local ordered = {}   -- every {form, marker} of every secret, longest form first

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
  -- Across secrets too: a secret containing another (a text holding a key) is
  -- replaced whole before the shorter one could cut it and leave the rest in clear.
  for _, form in ipairs(s.forms) do ordered[#ordered + 1] = { form, s.marker } end
  table.sort(ordered, function(a, b)
    if #a[1] ~= #b[1] then return #a[1] > #b[1] end
    return a[1] < b[1]
  end)
end

local function plain_replace(text, needle, repl)
  local out, start = {}, 1
  while true do
    local i, j = text:find(needle, start, true)
    if not i then break end
    out[#out + 1] = text:sub(start, i - 1)
    out[#out + 1] = repl
    start = j + 1
  end
  if start == 1 then return text end
  out[#out + 1] = text:sub(start)
  return table.concat(out)
end

--- Replaces every tainted secret in text.
function M.scrub(text)
  if type(text) ~= "string" then return text end
  for _, f in ipairs(ordered) do text = plain_replace(text, f[1], f[2]) end
  return text
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
  if #ordered == 0 and not copy then return v end
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
function M.find_leak(text)
  if #secrets == 0 then return nil end
  -- A marker is not a leak, even where a secret's hex happens to occur in its digest.
  text = text:gsub(MARKER_PATTERN, "")
  for _, s in ipairs(secrets) do
    for _, form in ipairs(s.forms) do
      if text:find(form, 1, true) then return s.marker end
    end
  end
  return nil
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
  if #secrets == 0 then return nil end
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
