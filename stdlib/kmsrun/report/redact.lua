-- Secrets never reach disk in clear. Values known to be secret (private keys
-- returned by RPCs, credentials, anything a runbook marks secret) are tainted;
-- every sink passes its text through scrub(), which replaces each secret — raw,
-- JSON-escaped, hex and base64 forms — by a marker carrying its SHA-256, so runs
-- can still be compared.
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"

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

local function add_form(forms, s)
  if s and #s >= M.MIN_LENGTH then forms[#forms + 1] = s end
end

--- Taints value: from now on every sink replaces it by its marker.
function M.add(value)
  if type(value) ~= "string" or #value < M.MIN_LENGTH or known[value] then return end
  -- Text every marker holds ("REDACTED", "sha256:"...) is no secret: scrubbing it
  -- would only mangle the markers.
  if MARKER_PREFIX:find(value, 1, true) then return end
  known[value] = true
  local forms = {}
  add_form(forms, value)
  local escaped = json.quote(value):sub(2, -2)
  if escaped ~= value then add_form(forms, escaped) end
  add_form(forms, crypto.hex(value))
  add_form(forms, crypto.base64(value))
  local raw = value:match("^%x+$") and #value % 2 == 0 and crypto.unhex(value)
  if raw then
    add_form(forms, crypto.base64(raw))
    add_form(forms, value:upper())
  end
  -- Longest first, so a form containing another is replaced whole.
  table.sort(forms, function(a, b) return #a > #b end)
  local s = { forms = forms, marker = M.marker(value) }
  secrets[#secrets + 1] = s
  -- Across secrets too: a secret containing another (a text holding a key) is
  -- replaced whole before the shorter one could cut it and leave the rest in clear.
  for _, form in ipairs(forms) do ordered[#ordered + 1] = { form, s.marker } end
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

--- Returns a copy of a decoded response with secret fields replaced by markers
-- (and taints them). Private-key PEMs are caught wherever they are: a value
-- that is a key becomes its marker, a key inside a longer text is replaced there.
function M.response(value)
  if type(value) ~= "table" then
    if looks_private(value) then
      if value:match("^%s*" .. BEGIN) and value:find(END .. "%s*$") and select(2, value:gsub(BEGIN, "")) == 1 then
        M.add(value)
        return M.marker(value)
      end
      taint_blocks(value)
      return M.scrub(value)
    end
    return value
  end
  local copy = setmetatable({}, getmetatable(value))
  for k, v in pairs(value) do
    if type(v) == "string" and M.secret_fields[k] and v ~= "" then
      M.add(v)
      copy[k] = M.marker(v)
    else
      copy[k] = M.response(v)
    end
  end
  return copy
end

--- Every secret seen so far (raw), for the post-run leak scan.
function M.all()
  local list = {}
  for v in pairs(known) do list[#list + 1] = v end
  return list
end

--- Scans text for any tainted secret form; returns the first marker found or nil.
function M.find_leak(text)
  -- A marker is not a leak, even where a secret's hex happens to occur in its digest.
  text = text:gsub(MARKER_PATTERN, "")
  for _, s in ipairs(secrets) do
    for _, form in ipairs(s.forms) do
      if text:find(form, 1, true) then return s.marker end
    end
  end
  return nil
end

return M
