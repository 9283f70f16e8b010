-- Loading a runbook: text only, in its own environment over a curated base.
-- This is isolation (a typo'd global is an error, not a nil), not a security
-- sandbox: a runbook can do whatever kmsrun can.
local api = require "kmsrun.dsl.api"
local declare = require "kmsrun.dsl.declare"
local actions = require "kmsrun.dsl.actions"
local expect = require "kmsrun.dsl.expect"
local attested = require "kmsrun.dsl.attested"
local modules = require "kmsrun.run.modules"
local source = require "kmsrun.run.source"

local M = {}

local BASE = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "print", "select", "tonumber", "tostring",
  "type", "rawequal", "rawget", "rawlen", "rawset", "setmetatable", "getmetatable", "require",
  "string", "table", "math", "utf8",
}

--- Every name a runbook can use, sorted (for "did you mean" and `kmsrun check`).
function M.known_names(env_table)
  local list = {}
  for k in pairs(env_table) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local function var_proxy(values, declared)
  return setmetatable({}, {
    __index = function(_, name)
      local v = values[name]
      if v == nil then
        if declared[name] == nil then
          local names = {}
          for n in pairs(declared) do names[#names + 1] = n end
          local best = api.suggest(name, names)
          api.usage_error(string.format("unknown variable var.%s%s (declare it in runbook{vars = ...})", tostring(name),
            best and (" (did you mean var." .. best .. "?)") or ""))
        end
        api.usage_error(string.format("variable var.%s has no value: give --var %s=VALUE", name, name))
      end
      return v
    end,
    __newindex = function(_, name) api.usage_error("var." .. tostring(name) .. " is read-only; use a local") end,
  })
end

local function base_names(env)
  for _, name in ipairs(BASE) do env[name] = _G[name] end
  env.os = { time = os.time, date = os.date, clock = os.clock, getenv = os.getenv }
  return env
end

--- The environment a helper module runs in: the base, without the DSL's globals
-- (`local dsl = require "kmsrun.dsl"` gives them), with the runbook's require.
-- on_unknown(name, known): what reading an unknown name does (default: raise).
function M.module_environment(req, on_unknown)
  local env = base_names({})
  env.require = req
  local known = M.known_names(env)
  return setmetatable(env, {
    __index = function(_, name)
      if on_unknown then return on_unknown(tostring(name), known) end
      local best = api.suggest(tostring(name), known)
      local hint = api.functions[name] and (" (a helper module gets the DSL explicitly: local dsl = require \"kmsrun.dsl\"; dsl."
        .. tostring(name) .. "(...))") or (best and (" (did you mean '" .. best .. "'?)") or "")
      api.usage_error(string.format("unknown name '%s'%s", tostring(name), hint))
    end,
  })
end

--- The DSL as a module (`require "kmsrun.dsl"`): every DSL function of env, and var.
function M.dsl_table(env)
  local t = { var = rawget(env, "var") }
  for name in pairs(api.functions) do t[name] = rawget(env, name) end
  return t
end

--- Builds the environment a runbook runs in. vars: table for `var` (nil before resolution).
-- path: the runbook's path (its helper modules are found next to it).
-- Returns the environment and the list of helper modules loaded (filled as they load).
function M.environment(d, vars_ref, path)
  local env = base_names({})
  for name, fn in pairs(d) do env[name] = fn end
  for name, fn in pairs(actions) do env[name] = fn end
  for name, fn in pairs(expect) do env[name] = fn end
  for name, fn in pairs(attested) do env[name] = fn end
  env.var = setmetatable({}, { __index = function(_, k) return vars_ref.proxy[k] end,
    __newindex = function(_, k) api.usage_error("var." .. tostring(k) .. " is read-only; use a local") end })
  local req, loaded
  req, loaded = modules.new {
    dir = modules.dir_of(path or "."), dsl = M.dsl_table(env), host = require,
    env = function() return M.module_environment(req) end,
  }
  env.require = req
  local known = M.known_names(env)
  return setmetatable(env, {
    __index = function(_, name)
      local best = api.suggest(tostring(name), known)
      api.usage_error(string.format("unknown name '%s'%s", tostring(name), best and (" (did you mean '" .. best .. "'?)") or ""))
    end,
  }), loaded
end

-- Resolves variables: target defaults, declared defaults, --var overrides.
-- Returns values, declared, or nil, error; strict: a required variable without
-- a value is an error (lenient while loading: reading it raises instead).
local function resolve(header_vars, overrides, extra_decls, strict)
  local declared, values = {}, {}
  for name, v in pairs(extra_decls or {}) do declared[name] = v; values[name] = v.default end
  for name, v in pairs(header_vars or {}) do declared[name] = v; values[name] = v.default end
  for name, value in pairs(overrides or {}) do
    if declared[name] == nil then
      local names = {}
      for n in pairs(declared) do names[#names + 1] = n end
      local best = api.suggest(name, names)
      return nil, string.format("unknown variable '%s'%s", name, best and (" (did you mean '" .. best .. "'?)") or "")
    end
    values[name] = value
  end
  for name, v in pairs(declared) do
    if strict and v.required and (values[name] == nil or values[name] == "") then
      return nil, string.format("variable '%s' is required: give --var %s=VALUE (%s)", name, name, v.help or "")
    end
  end
  return values, declared
end

--- Loads the runbook file: returns spec (header, topology, cases) | nil, err.
-- Declarations run now; case bodies run later. opts.vars (the --var overrides)
-- and opts.target_vars (the target's declarations) make `var` readable from the
-- moment `runbook{vars = ...}` has declared them, so the topology can depend on
-- a variable (`for i = 1, tonumber(var.replicas) do kms(...) end`).
function M.load(path, opts)
  opts = opts or {}
  local text, ferr = source.read(path)
  if not text then return nil, ferr end
  local d, spec = declare.new()
  local vars_ref = {}
  vars_ref.proxy = setmetatable({}, { __index = function(_, k)
    api.usage_error("var." .. tostring(k) .. " cannot be read before runbook{vars = ...} declares it")
  end })
  local declare_header = d.runbook
  d.runbook = function(h)
    declare_header(h)
    local values, declared = resolve(spec.header.vars, opts.vars, opts.target_vars, false)
    -- An unknown --var is reported once loading is done (main.lua), with its suggestion.
    if values then vars_ref.proxy = var_proxy(values, declared) end
  end
  local env, helpers = M.environment(d, vars_ref, path)
  local chunk, err = load(text, "@" .. path, "t", env)
  if not chunk then return nil, err end
  api.runbook_sources["@" .. path] = true
  local ok, lerr = xpcall(chunk, function(e)
    if type(e) == "table" and e.usage then return e.message end
    return debug.traceback(tostring(e), 2)
  end)
  if not ok then return nil, lerr end
  spec.path = path
  spec.header = spec.header or {}
  spec.vars_ref = vars_ref
  spec.text = text
  spec.helpers = helpers
  --- Resolves variables: declared defaults, target defaults, --var overrides.
  function spec.resolve_vars(overrides, extra_decls)
    local values, declared = resolve(spec.header.vars, overrides, extra_decls, true)
    if not values then return nil, declared end
    vars_ref.proxy = var_proxy(values, declared)
    return values, declared
  end
  return spec
end

return M
