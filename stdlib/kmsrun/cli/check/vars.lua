-- Variable resolution for check and plan, as runbook.lua's resolve_vars does it
-- (target defaults, then the runbook's declarations, then --var overrides) but
-- keeping where each value came from and reporting every missing one, not the first.
local api = require "kmsrun.dsl.api"

local M = {}

--- Returns {values =, decls =, sources = name -> "default" | "target NAME" | "--var",
-- missing = {names}} or nil, error (an unknown --var name: a command-line mistake).
function M.resolve(header_vars, target, overrides)
  local r = { values = {}, decls = {}, sources = {}, missing = {} }
  for name, v in pairs(target and target.vars or {}) do
    r.decls[name], r.values[name], r.sources[name] = v, v.default, "target " .. target.name
  end
  for name, v in pairs(header_vars or {}) do
    if type(v) == "table" then r.decls[name], r.values[name], r.sources[name] = v, v.default, "default" end
  end
  local names = {}
  for n in pairs(r.decls) do names[#names + 1] = n end
  table.sort(names)
  for name, value in pairs(overrides or {}) do
    if r.decls[name] == nil then
      local best = api.suggest(name, names)
      return nil, string.format("unknown variable '%s'%s", name, best and (" (did you mean '" .. best .. "'?)") or "")
    end
    r.values[name], r.sources[name] = value, "--var"
  end
  for _, name in ipairs(names) do
    local v = r.decls[name]
    if v.required and (r.values[name] == nil or r.values[name] == "") then r.missing[#r.missing + 1] = name end
  end
  r.names = names
  return r
end

return M
