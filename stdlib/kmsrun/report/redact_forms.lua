-- The forms a secret takes in practice, for the scrubber and the leak scan alike
-- (report/redact.lua): one list, so what is scrubbed is exactly what is looked for.
--
-- Every secret: raw, JSON-escaped, upper and lower case from 8 bytes on (a token
-- pasted in capitals, a hex key in either case), hex of its bytes (both cases), base64 and base64url
-- (padded and not). A hex secret also: base64/base64url of the bytes it spells.
-- A PEM private key also: the PEM on one line (newlines removed, or CRLF, or spaces),
-- the base64 body alone (with and without its line breaks, and each line of it), the DER in base64url and
-- hex, and the private scalar in hex (both cases), base64 and base64url.
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"

local M = {}

local function b64url(raw)
  return (crypto.base64(raw):gsub("+", "-"):gsub("/", "_"))
end

-- Binary-ish encodings of bytes: hex (both cases), base64 and base64url, each padded
-- and not (a JWT or a URL drops the padding).
local function byte_forms(add, raw)
  local h = crypto.hex(raw)
  add(h)
  add(h:upper())
  local b = crypto.base64(raw)
  add(b)
  add((b:gsub("=+$", "")))
  local u = b64url(raw)
  add(u)
  add((u:gsub("=+$", "")))
end

local BEGIN = "%-%-%-%-%-BEGIN ([%u ]*PRIVATE KEY)%-%-%-%-%-"

-- The forms only a PEM private key has.
local function pem_forms(add, pem)
  local label, body = pem:match("^%s*" .. BEGIN .. "\r?\n(.-)\r?\n?%-%-%-%-%-END")
  if not label then return end
  local trimmed = pem:match("^%s*(.-)%s*$")
  add((trimmed:gsub("\r?\n", "")))
  add((trimmed:gsub("\r?\n", " ")))
  add((trimmed:gsub("\r?\n", "\r\n")))
  add(trimmed)
  add(body)
  -- Each body line on its own: a key cut in the middle (a capped error text, a
  -- wrapped log line) still has whole lines of it.
  for line in body:gmatch("[^\r\n]+") do
    if #line >= 16 then add(line) end
  end
  local joined = body:gsub("%s+", "")
  local der = crypto.unbase64(joined)
  if der then
    add(joined)
    byte_forms(add, der)
  end
  local info = crypto.key_info(pem)
  if info and info.private_raw then byte_forms(add, info.private_raw) end
end

--- Every form of value of at least min_length bytes, longest first, each once.
function M.of(value, min_length)
  local seen, forms = {}, {}
  local function add(s)
    if s and #s >= min_length and not seen[s] then
      seen[s] = true
      forms[#forms + 1] = s
    end
  end
  add(value)
  add(json.quote(value):sub(2, -2))
  -- Case variants of a short value would hit ordinary words ("pass" in "PASSED").
  if #value >= 8 and not value:find("\n", 1, true) then
    add(value:upper())
    add(value:lower())
  end
  byte_forms(add, value)
  local raw = value:match("^%x+$") and #value % 2 == 0 and crypto.unhex(value)
  if raw then byte_forms(add, raw) end
  if value:find("PRIVATE KEY-----", 1, true) then pem_forms(add, value) end
  -- Longest first, so a form containing another is replaced whole.
  table.sort(forms, function(a, b)
    if #a ~= #b then return #a > #b end
    return a < b
  end)
  return forms
end

return M
