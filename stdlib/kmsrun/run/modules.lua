-- A runbook's own helper modules: `require "name"` in a runbook (or in one of its
-- modules) finds `name.lua` (dots are folders, or `name/init.lua`) next to the
-- runbook file, wherever kmsrun is invoked from; never the current directory,
-- so `kmsrun check` and a run from another directory load the same code.
-- `require "kmsrun.dsl"` gives the DSL of this runbook (the same functions a
-- runbook sees as globals, and `var`): a module gets the DSL explicitly,
-- because modules run in their own environment without the DSL's globals.
-- Other `kmsrun.*` names are the stdlib and host modules (handed to `host`), and a
-- name found nowhere next to the runbook goes to `fallback` if given: both need
-- host access (run/host_access.lua).
local api = require "kmsrun.dsl.api"
local fs = require "kmsrun.fs"

local M = {}

--- The directory of a file path ("." for a bare file name).
function M.dir_of(path)
  return (tostring(path):match("^(.*)/[^/]*$")) or "."
end

local LOADING = setmetatable({}, { __tostring = function() return "<loading>" end })

--- A `require` for one loaded runbook. opts: dir (the runbook's directory),
-- dsl (what `require "kmsrun.dsl"` returns), host (require for other kmsrun.*
-- names), env (function(path) -> the environment a module's chunk runs in),
-- loaded (optional callback(name, path) after a module has loaded).
-- Returns the function and the list of loaded module paths (in load order).
function M.new(opts)
  local cache, paths = {}, {}
  local function req(name)
    if type(name) ~= "string" or name == "" then api.usage_error("require: give a module name (a string)") end
    if name == "kmsrun.dsl" then return opts.dsl end
    if name == "kmsrun" or name:match("^kmsrun%.") then return opts.host(name) end
    local hit = cache[name]
    if hit == LOADING then api.usage_error("require: module '" .. name .. "' requires itself (a require cycle)") end
    if hit ~= nil then return hit end
    local rel = name:gsub("%.", "/")
    local tried = {}
    for _, pattern in ipairs({ "%s/%s.lua", "%s/%s/init.lua" }) do
      local path = (pattern:format(opts.dir, rel):gsub("^%./", ""))
      tried[#tried + 1] = path
      if fs.exists(path) then
        local f, ferr = io.open(path, "r")
        if not f then api.usage_error("require: cannot read " .. path .. ": " .. tostring(ferr)) end
        local text = f:read("a")
        f:close()
        local chunk, err = load(text, "@" .. path, "t", opts.env(path))
        if not chunk then api.usage_error("require '" .. name .. "': " .. tostring(err)) end
        -- Its lines count as runbook lines: a step or a mistake in a helper is
        -- reported at the helper's line.
        api.runbook_sources["@" .. path] = true
        cache[name] = LOADING
        local ok, result = pcall(chunk, name, path)
        if not ok then cache[name] = nil; error(result, 0) end
        if result == nil then result = true end
        cache[name] = result
        paths[#paths + 1] = path
        if opts.loaded then opts.loaded(name, path) end
        return result
      end
    end
    -- Any other module: host access only (run/host_access.lua).
    if opts.fallback then
      local ok, r = pcall(opts.fallback, name)
      if ok then return r end
      if type(r) == "table" and r.usage then
        api.usage_error(string.format("require: no module '%s' next to the runbook (tried %s), and %s", name,
          table.concat(tried, ", "), r.message))
      end
      error(r, 0)
    end
    api.usage_error(string.format("require: no module '%s' next to the runbook (tried %s); helper modules are "
      .. "found relative to the runbook's directory", name, table.concat(tried, ", ")))
  end
  return req, paths
end

return M
