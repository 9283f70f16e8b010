-- Values the dry run cannot know: what an unknown global, a failed declaration,
-- a `require`d module or an unknown response field would be at run time. An
-- unknown absorbs every operation (index, call, arithmetic, concatenation) and
-- yields another unknown, so one mistake does not cascade into a Lua error
-- that hides the next; argument checks skip unknowns for the same reason.
local M = {}

local mt = {}

local function new(label) return setmetatable({ label = label }, mt) end
M.new = new

function M.is(v) return getmetatable(v) == mt end

mt.__index = function(u, k)
  -- Integer keys end: ipairs and # must terminate on an unknown.
  if math.type(k) == "integer" then return nil end
  return new(rawget(u, "label") .. "." .. tostring(k))
end
mt.__newindex = function() end
mt.__call = function(u) return new(rawget(u, "label") .. "(...)") end
mt.__tostring = function(u) return "<" .. rawget(u, "label") .. ">" end
mt.__concat = function(a, b) return tostring(a) .. tostring(b) end
mt.__len = function() return 0 end
mt.__lt = function() return false end
mt.__le = function() return false end
mt.__close = function() end
mt.__pairs = function() return next, {}, nil end
for _, op in ipairs({ "add", "sub", "mul", "div", "mod", "pow", "unm", "idiv", "band", "bor", "bxor", "shl", "shr", "bnot" }) do
  mt["__" .. op] = function(a) return M.is(a) and a or new("?") end
end
mt.__name = "unknown"

--- True when v, or (deep = true) a field of the table v, is unknown.
function M.within(v, deep)
  if M.is(v) then return true end
  if deep and type(v) == "table" and rawget(v, "__kind") == nil then
    for _, x in pairs(v) do if M.is(x) then return true end end
  end
  return false
end

return M
