-- Lowercase hex without 0x (the wire form of bytes everywhere in the KMS protocol).
local M = {}

function M.encode(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Rust's {:?} of the char a hex decoder names: the byte as a char (U+0000-U+00FF),
-- escaped where escape_debug escapes it (controls, the soft hyphen).
local NAMED = { ["'"] = "\\'", ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ["\0"] = "\\0" }
local function rust_char(ch)
  local b = ch:byte()
  if NAMED[ch] then return "'" .. NAMED[ch] .. "'" end
  if b < 0x20 or (b >= 0x7f and b <= 0x9f) or b == 0xad then return string.format("'\\u{%x}'", b) end
  return "'" .. utf8.char(b) .. "'"
end

--- Decodes hex of either case as Rust's hex crate 0.4 does (the decoder behind
-- prpc's bytes fields): the length is checked before the digits, and the error is
-- the crate's Display text. Returns bytes or nil, message.
function M.decode(h)
  if #h % 2 == 1 then return nil, "Odd number of digits" end
  local bad = h:find("[^%x]")
  if bad then return nil, string.format("Invalid character %s at position %d", rust_char(h:sub(bad, bad)), bad - 1) end
  return (h:gsub("%x%x", function(p) return string.char(tonumber(p, 16)) end))
end

return M
