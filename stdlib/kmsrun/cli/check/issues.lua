-- The mistakes `kmsrun check` finds, each at a runbook line. The static and the
-- dry-run passes can find the same mistake twice (an unknown name is both read
-- in the source and looked up when the case runs), so each has a key and the
-- first report of a key wins: the static pass runs first and knows more (the
-- locals in scope) for "did you mean".
local api = require "kmsrun.dsl.api"

local M = {}

local Issues = {}
Issues.__index = Issues

--- A collector for the runbook whose chunk name's short form is short_src
-- (the prefix of every runbook location, "short_src:line").
function M.new(short_src)
  return setmetatable({ list = {}, seen = {}, short_src = short_src, seq = 0 }, Issues)
end

--- Adds a mistake at line (a number: the runbook's line; a string "file:N": a
-- line of one of the runbook's helper modules; nil when it has none).
function Issues:add(line, message, key)
  key = key or ((line or "?") .. ":" .. message)
  if self.seen[key] then return end
  self.seen[key] = true
  self.seq = self.seq + 1
  self.list[#self.list + 1] = { line = line, message = message, seq = self.seq }
end

--- Splits "short_src:line: message" (a runbook location or a Lua error raised in
-- the runbook) into line, message; anything else has no line.
function Issues:split(text)
  text = tostring(text)
  local prefix = self.short_src .. ":"
  if text:sub(1, #prefix) == prefix then
    local line, rest = text:sub(#prefix + 1):match("^(%d+): ?(.*)$")
    if line then return tonumber(line), rest end
  end
  -- A line of a helper module the runbook loaded (run/modules.lua registers them).
  local file, line, rest = text:match("^([^\n]-):(%d+): ?(.*)$")
  if file and api.runbook_sources["@" .. file] then return file .. ":" .. line, rest end
  return nil, text
end

--- Adds a message that carries its own runbook location ("short_src:line: ...").
function Issues:add_located(text, key)
  local line, message = self:split(text)
  self:add(line, message, key)
end

--- The line of a location string as api.runbook_location() returns it ("short_src:line"), or nil.
function Issues:line_of(location)
  return location and (self:split(location .. ": x")) or nil
end

--- Adds message at a location string as api.runbook_location() returns it.
function Issues:add_at(location, message, key)
  self:add(self:line_of(location), message, key)
end

--- The mistakes in line order (in order of discovery within a line).
function Issues:sorted()
  local list = { table.unpack(self.list) }
  -- The runbook's lines first, then the helper modules' (by file, then line).
  local function key(i)
    if type(i.line) == "string" then
      local f, n = i.line:match("^(.*):(%d+)$")
      return 1, f, tonumber(n)
    end
    return 0, "", i.line or 0
  end
  table.sort(list, function(a, b)
    local ga, fa, la = key(a)
    local gb, fb, lb = key(b)
    if ga ~= gb then return ga < gb end
    if fa ~= fb then return fa < fb end
    if la ~= lb then return la < lb end
    return a.seq < b.seq
  end)
  return list
end

function Issues:count() return #self.list end

--- Writes "path:line: message" lines to out (a file handle).
function Issues:write(out, path)
  for _, i in ipairs(self:sorted()) do
    if type(i.line) == "string" then out:write(i.line, ": ", i.message, "\n")
    elseif i.line then out:write(path, ":", i.line, ": ", i.message, "\n")
    else out:write(path, ": ", i.message, "\n") end
  end
end

return M
