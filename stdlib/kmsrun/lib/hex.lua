-- Lowercase hex without 0x (the wire form of bytes everywhere in the KMS protocol).
local M = {}

function M.encode(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- Decodes hex of either case; returns bytes or nil, message.
function M.decode(h)
  if #h % 2 == 1 then return nil, "Odd number of digits" end
  local bad = h:find("[^%x]")
  if bad then return nil, string.format("Invalid character '%s' at position %d", h:sub(bad, bad), bad - 1) end
  return (h:gsub("%x%x", function(p) return string.char(tonumber(p, 16)) end))
end

return M
