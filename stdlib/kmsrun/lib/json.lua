-- JSON for the files kmsrun writes and the answers it reads: deterministic output
-- (object keys sorted, or in a given order; explicit arrays; optional pretty printing)
-- from the stdlib's one encoder, and cjson's fast decoder.
local cjson = require "cjson.safe"

local M = {}
M.null = cjson.null

local W = require "kmsrun.lib.json_writer"

--- Marks t (default a new table) as a JSON array, so an empty one encodes as [].
M.array = W.array

--- An object whose keys encode in the order given: M.ordered({"a", 1, "b", 2}).
function M.ordered(pairs_list)
  local t, keys = {}, {}
  for i = 1, #pairs_list, 2 do
    keys[#keys + 1] = pairs_list[i]
    t[pairs_list[i]] = pairs_list[i + 1]
  end
  return W.object(t, keys)
end

--- Quotes a string as kmsrun's files write it (control characters escaped, UTF-8 kept valid).
function M.quote(s) return W.quote(s, W.KMSRUN) end

--- Encodes v (policy KMSRUN in kmsrun.lib.json_writer); opts.pretty indents with two spaces.
function M.encode(v, opts)
  local ok, text = pcall(W.encode, v, W.KMSRUN, opts and opts.pretty and "  " or nil)
  if not ok then error("json.encode: " .. tostring(text), 2) end
  return text
end

--- Decodes text; returns value | nil, err.
function M.decode(text)
  if type(text) ~= "string" then return nil, "json.decode: expected a string" end
  local v, err = cjson.decode(text)
  if v == nil and err then return nil, err end
  return v
end

return M
