-- Secret scrubbing (stdlib/kmsrun/report/redact.lua): a private key that shows up raw,
-- JSON-escaped, hex or base64 is scrubbed in every form, and find_leak finds each
-- form on its own. Run by tests/e2e/test_faults.sh: kmsrun test tests/faults/test_redact.lua
local T = require "kmsrun.lib.testing"
local redact = require "kmsrun.report.redact"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"

local function forms_of(value)
  return {
    raw = value,
    json = json.quote(value):sub(2, -2),
    hex = crypto.hex(value),
    base64 = crypto.base64(value),
  }
end

T.test("a PEM key: raw, JSON-escaped, hex and base64 are all scrubbed", function()
  local pem = crypto.keygen()
  T.match(pem, "^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-")
  local f = forms_of(pem)
  T.ok(f.json ~= pem, "the JSON-escaped form differs (newlines)")
  local text = table.concat({ "raw: ", f.raw, "\njson: {\"k\":\"", f.json, "\"}\nhex: ", f.hex,
    "\nbase64: ", f.base64, "\nend" })
  T.eq(redact.find_leak(text), nil, "not a secret before it is tainted")
  redact.add(pem)
  local clean = redact.scrub(text)
  for name, form in pairs(f) do
    T.ok(not clean:find(form, 1, true), name .. " form scrubbed")
  end
  local marker = redact.marker(pem)
  local _, n = clean:gsub(marker:gsub("%p", "%%%0"), "")
  T.eq(n, 4, "one marker per occurrence")
  T.contains(clean, "raw: " .. marker)
  T.contains(clean, "\nend")
  T.eq(redact.find_leak(clean), nil, "the scrubbed text has no leak")
  for name, form in pairs(f) do
    T.eq(redact.find_leak("prefix " .. form .. " suffix"), marker, "find_leak finds the " .. name .. " form")
  end
  -- Each PEM body line is not a form of its own: the leak check looks for whole values.
end)

T.test("a hex secret: lower, upper and base64 of its raw bytes", function()
  local raw = crypto.random(32)
  local hex = crypto.hex(raw)
  redact.add(hex)
  local marker = redact.marker(hex)
  for name, form in pairs({ lower = hex, upper = hex:upper(), base64_raw = crypto.base64(raw),
      base64_text = crypto.base64(hex), hex_of_text = crypto.hex(hex) }) do
    local clean = redact.scrub("<" .. form .. ">")
    T.eq(clean, "<" .. marker .. ">", name .. " form scrubbed")
    T.eq(redact.find_leak("x" .. form .. "x"), marker, "find_leak finds the " .. name .. " form")
  end
end)

T.test("short values are never secrets (no scrubbing of common text)", function()
  redact.add("abc")
  T.eq(redact.scrub("abc abc"), "abc abc")
end)

T.test("response(): secret fields and PEMs in any field become markers", function()
  local pem = crypto.keygen()
  local body = {
    ca_pubkey = "04abcdef", temp_ca_key = "-----BEGIN PRIVATE KEY-----\nAAAAtempkey\n-----END PRIVATE KEY-----\n",
    k256_key = "11223344556677889900aabbccddeeff11223344556677889900aabbccddeeff",
    nested = { list = { "fine", { debug = pem } } },
  }
  local copy = redact.response(body)
  T.eq(copy.ca_pubkey, "04abcdef")
  T.eq(copy.temp_ca_key, redact.marker(body.temp_ca_key))
  T.eq(copy.k256_key, redact.marker(body.k256_key))
  T.eq(copy.nested.list[1], "fine")
  T.eq(copy.nested.list[2].debug, redact.marker(pem))
  T.eq(body.nested.list[2].debug, pem, "the original is untouched")
  local text = json.encode(copy)
  T.eq(redact.find_leak(text), nil)
  T.eq(redact.find_leak(json.encode(body)) ~= nil, true, "the original encodes with leaks")
end)

T.test("response(): a key inside a longer text is replaced in place", function()
  local pem = crypto.keygen()
  local text = "error: failed to parse\n" .. pem .. "while handling the request"
  local out = redact.response(text)
  T.contains(out, "error: failed to parse\n")
  T.contains(out, "while handling the request")
  T.contains(out, "[REDACTED sha256:")
  T.ok(not out:find("PRIVATE KEY", 1, true), "no key left")
  T.eq(redact.find_leak(text) ~= nil, true, "the key is tainted for the leak scan")
  -- Two keys in one text.
  local a, b = crypto.keygen(), crypto.keygen()
  local two = redact.response("first " .. a .. " second " .. b .. " end")
  T.ok(not two:find("PRIVATE KEY", 1, true), "both keys replaced")
  T.contains(two, "first [REDACTED sha256:")
  T.contains(two, " end")
end)

T.test("response(): a key cut short (a truncated body) is scrubbed to the end", function()
  local pem = crypto.keygen()
  local cut = "upstream said: " .. pem:sub(1, 100)
  local out = redact.response(cut)
  T.eq(out:sub(1, 15), "upstream said: ")
  T.ok(not out:find(pem:sub(40, 90), 1, true), "no part of the key body left")
end)

T.test("response(): a value that is exactly one key becomes its marker", function()
  local pem = crypto.keygen()
  T.eq(redact.response(pem), redact.marker(pem))
  T.eq(redact.response({ x = pem }).x, redact.marker(pem))
end)
