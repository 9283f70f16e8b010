-- The lexical layer of both byte-exact JSON decoders (lib/json_js.lua for
-- JSON.parse, lib/json_serde.lua for serde_json): string bodies and number
-- literals. The grammar is RFC 8259's in both; what differs is what each peer says
-- about a malformed token and where it points, so a scanner never words an error:
-- it calls the dialect's fail(kind, at), which must raise. `at` is the byte index
-- serde_json's position points at (the offending byte, or the last byte at EOF).
local M = {}

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- Four hex digits at s[i]; the code point and the index after them.
local function hex4(s, i, fail)
  for k = 0, 3 do
    local c = s:sub(i + k, i + k)
    if c == "" then fail("eof", #s) end
    if not c:match("%x") then fail("hex", i + k) end
  end
  return tonumber(s:sub(i, i + 3), 16), i + 4
end

--- Scans the string body at s[i] (just after its opening quote): the decoded text
-- and the index after the closing quote. Failure kinds: "eof", "control" (a raw
-- byte below 0x20), "escape" (an unknown escape letter), "hex" (a bad \u digit),
-- "hex_end" (a leading surrogate not followed by \u), "surrogate" (an unpaired one).
-- lone_surrogates = "wtf8" keeps an unpaired surrogate as its bytes, as JSON.parse
-- does (it builds UTF-16 strings); otherwise it fails, as serde_json does.
function M.string(s, i, fail, lone_surrogates)
  local parts = {}
  while true do
    local stop = s:find('["\\%z\1-\31]', i)
    if not stop then fail("eof", #s) end
    parts[#parts + 1] = s:sub(i, stop - 1)
    local c = s:sub(stop, stop)
    if c == '"' then return table.concat(parts), stop + 1 end
    if c ~= "\\" then fail("control", stop) end
    local e = s:sub(stop + 1, stop + 1)
    if e == "" then fail("eof", #s) end
    i = stop + 2
    if ESCAPES[e] then
      parts[#parts + 1] = ESCAPES[e]
    elseif e == "u" then
      local cp
      cp, i = hex4(s, i, fail)
      if cp >= 0xD800 and cp <= 0xDBFF then
        if lone_surrogates == "wtf8" then
          -- Paired only with a trailing surrogate; anything else is read on its own.
          local lo = s:match("^\\u([dD][c-fC-F]%x%x)", i)
          if lo then cp, i = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(lo, 16) - 0xDC00), i + 6 end
        else
          if s:sub(i, i + 1) ~= "\\u" then fail("hex_end", i - 1) end
          local lo
          lo, i = hex4(s, i + 2, fail)
          if lo < 0xDC00 or lo > 0xDFFF then fail("surrogate", i - 1) end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
        end
      elseif cp >= 0xDC00 and cp <= 0xDFFF and lone_surrogates ~= "wtf8" then
        fail("surrogate", i - 1)
      end
      parts[#parts + 1] = utf8.char(cp)
    else
      fail("escape", stop + 1)
    end
  end
end

--- Scans the number literal whose digits start at s[i] (a sign already read by the
-- caller): its text (digits only), the index after it, and whether it has a
-- fraction or exponent. Failure kinds: "eof" (the literal ends with the input
-- where a digit must follow), "number" (at the byte where the grammar breaks).
function M.number(s, i, fail)
  local c = s:sub(i, i)
  if c == "" then fail("eof", #s) end
  if not c:match("%d") then fail("number", i) end
  local j = i + 1
  if c == "0" then
    if s:match("^%d", j) then fail("number", j) end
  else
    j = s:find("[^%d]", j) or #s + 1
  end
  local float = false
  local function digits(from)
    local _, e = s:find("^%d+", from)
    if not e then
      if from > #s then fail("eof", #s) end
      fail("number", from)
    end
    return e + 1
  end
  if s:sub(j, j) == "." then j, float = digits(j + 1), true end
  local e = s:sub(j, j)
  if e == "e" or e == "E" then
    j = j + 1
    local sign = s:sub(j, j)
    if sign == "+" or sign == "-" then j = j + 1 end
    j, float = digits(j), true
  end
  return s:sub(i, j - 1), j, float
end

return M
