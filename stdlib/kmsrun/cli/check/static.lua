-- The static pass of `kmsrun check`: reads the source, not the run, so it sees
-- code the dry run never reaches (a branch not taken, a function never called).
-- It reports globals the runbook environment does not have, DSL names the
-- runbook overwrites, and var.X for undeclared X.
local api = require "kmsrun.dsl.api"
local scope = require "kmsrun.cli.check.scope"

local M = {}

--- The global references of text (see check/scope.lua), or nil, error.
function M.references(text)
  local ok, refs = pcall(scope.globals, text)
  if not ok then return nil, refs end
  return refs
end

--- Unknown names and overwritten DSL names. known: sorted list of environment
-- names; suggestions (key -> name or false) gets the suggestion made for each.
function M.names(issues, refs, known, suggestions)
  local is_known, written = {}, {}
  for _, n in ipairs(known) do is_known[n] = true end
  for _, r in ipairs(refs) do if r.write then written[r.name] = true end end
  for _, r in ipairs(refs) do
    if r.write then
      if api.functions[r.name] then
        issues:add(r.line, string.format("assigns the global '%s', replacing the DSL function; use a local", r.name))
      end
    elseif not is_known[r.name] and not written[r.name] then
      -- A misspelt local is as likely as a misspelt DSL name.
      local candidates = { table.unpack(known) }
      for _, l in ipairs(r.locals) do candidates[#candidates + 1] = l end
      local best = api.suggest(r.name, candidates)
      local key = "name:" .. r.line .. ":" .. r.name
      suggestions[key] = best or false
      issues:add(r.line, string.format("unknown name '%s'%s", r.name, best and (" (did you mean '" .. best .. "'?)") or ""), key)
    end
  end
end

--- Uses of what needs host access (run/host_access.lua's HOST) by a runbook
-- that was not granted it: reported, since they fail when the run reaches them.
function M.host_access(issues, refs, granted)
  local host = require "kmsrun.run.host_access"
  for _, r in ipairs(refs) do
    if r.name == "os" and r.field == "exit" and not r.write then issues:add(r.line, host.message("os.exit")) end
  end
  if granted then return end
  for _, r in ipairs(refs) do
    local spec = not r.write and host.HOST[r.name]
    local what
    if spec == true and not (r.name == "debug" and r.field == "traceback") then
      what = r.name .. (r.field and ("." .. r.field) or "")
    elseif type(spec) == "table" and r.field and spec[r.field] then
      what = r.name .. "." .. r.field
    end
    if what and what ~= "os.exit" then issues:add(r.line, host.message(what)) end
  end
end

--- var.X for X not among decls (name -> declaration).
function M.vars(issues, refs, decls)
  local names = {}
  for n in pairs(decls) do names[#names + 1] = n end
  table.sort(names)
  for _, r in ipairs(refs) do
    if r.name == "var" and not r.write and r.field and decls[r.field] == nil then
      local best = api.suggest(r.field, names)
      issues:add(r.line, string.format("unknown variable var.%s%s (declare it in runbook{vars = ...})", r.field,
        best and (" (did you mean var." .. best .. "?)") or ""), "var:" .. r.line .. ":" .. r.field)
    end
  end
end

--- Lines where each var.X is read: name -> {line, ...}.
function M.var_lines(refs)
  local out = {}
  for _, r in ipairs(refs) do
    if r.name == "var" and r.field then
      out[r.field] = out[r.field] or {}
      local l = out[r.field]
      if l[#l] ~= r.line then l[#l + 1] = r.line end
    end
  end
  return out
end

return M
