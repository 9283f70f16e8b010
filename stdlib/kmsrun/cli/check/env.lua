-- The environment `kmsrun check` and `kmsrun plan` load a runbook in: the same
-- names as runbook.environment (so "unknown name" means the same thing in both),
-- with the real declarations (they have no side effects) wrapped so a mistake is
-- recorded and loading goes on, the actions replaced by the dry DSL, `print`
-- made inert, and an unknown name recorded instead of raised. The runbook's own
-- helper modules (found next to it, run/modules.lua) are loaded and run for real
-- against the dry DSL; host and stdlib modules (`kmsrun.*`) stay inert
-- placeholders, so nothing is started or called.
local api = require "kmsrun.dsl.api"
local runbook = require "kmsrun.run.runbook"
local declare = require "kmsrun.dsl.declare"
local unknown = require "kmsrun.cli.check.unknown"
local dry = require "kmsrun.cli.check.dry"
local modules = require "kmsrun.run.modules"

local M = {}

local function mistake(ctx, msg, key) ctx.issues:add_at(api.runbook_location(), msg, key) end

-- A usage error raised by a declaration carries its location; anything else is
-- placed at the runbook line that made the call.
local function record_error(ctx, e)
  if type(e) == "table" and e.usage then ctx.issues:add_located(e.message)
  else
    -- Raised at a line of the runbook or of one of its helper modules: that line.
    local line, msg = ctx.issues:split(tostring(e))
    if line then ctx.issues:add(line, msg) else mistake(ctx, (tostring(e):gsub("^[^\n]-:%d+: ", ""))) end
  end
end

local function wrap_declaration(ctx, name, fn)
  return function(...)
    if ctx.phase ~= "load" then
      mistake(ctx, string.format("%s: declarations belong at the top level of the runbook, not inside setup, a case or teardown", name))
      return unknown.new(name .. "(...)")
    end
    if name == "runbook" then ctx.header_line = ctx.issues:line_of(api.runbook_location()) end
    local a = table.pack(...)
    local r = table.pack(pcall(fn, ...))
    -- From here on var is readable, as at run time (runbook.lua).
    if r[1] and name == "runbook" and ctx.on_header then ctx.on_header() end
    if r[1] then return table.unpack(r, 2, r.n) end
    -- A declaration fed an unknown (an earlier mistake) fails for that reason only.
    local vague = false
    for i = 1, a.n do if unknown.within(a[i], true) then vague = true end end
    if not vague then record_error(ctx, r[2]) end
    return unknown.new(name .. " " .. tostring(a[1]))
  end
end

local function var_proxy(ctx)
  return setmetatable({}, {
    __index = function(_, name)
      name = tostring(name)
      if ctx.phase == "load" and not ctx.vars_at_load then
        mistake(ctx, "var." .. name .. " cannot be read before runbook{vars = ...} declares it")
        return unknown.new("var." .. name)
      end
      if ctx.var_decls[name] == nil then
        local names = {}
        for n in pairs(ctx.var_decls) do names[#names + 1] = n end
        table.sort(names)
        local best = api.suggest(name, names)
        local line = ctx.issues:line_of(api.runbook_location())
        -- Same text as runbook.lua raises at run time.
        ctx.issues:add(line, string.format("unknown variable var.%s%s (declare it in runbook{vars = ...})", name,
          best and (" (did you mean var." .. best .. "?)") or ""), "var:" .. tostring(line) .. ":" .. name)
        return unknown.new("var." .. name)
      end
      local v = ctx.var_values[name]
      if v == nil and ctx.var_missing[name] then return unknown.new("var." .. name) end -- reported with the header
      if v == nil then
        mistake(ctx, string.format("variable var.%s has no value: give --var %s=VALUE", name, name))
        return unknown.new("var." .. name)
      end
      return v
    end,
    __newindex = function(_, name) mistake(ctx, "var." .. tostring(name) .. " is read-only; use a local") end,
  })
end

--- Builds the environment; sets ctx.spec (the declarations' collector) and
-- ctx.known (every name a runbook can use, sorted).
function M.new(ctx)
  local d, spec = declare.new()
  ctx.spec = spec
  ctx.world = require("kmsrun.cli.check.world").new(spec)
  local real = runbook.environment(d, { proxy = {} }, nil, function() return spec.header end)
  local actions = dry.new(ctx)
  local env = {}
  for name, v in pairs(real) do
    if d[name] then env[name] = wrap_declaration(ctx, name, d[name])
    -- A pure declaration outside declare.lua (app) has no stand-in: it runs as is.
    elseif api.functions[name] then env[name] = actions[name] or v
    else env[name] = v end
  end
  env.print = function() end
  -- What reaches the host stays inert whatever the grant (the static pass reports
  -- its use without host access): checking a runbook never runs a command.
  local host = require "kmsrun.run.host_access"
  for name, spec in pairs(host.HOST) do
    if spec == true then env[name] = unknown.new(name) end
  end
  local safe_os = {}
  for k, v in pairs(real.os) do safe_os[k] = v end
  env.os = setmetatable(safe_os, { __index = function(_, k)
    if host.HOST.os[k] then return unknown.new("os." .. tostring(k)) end
  end })
  env.var = var_proxy(ctx)
  local req
  req, ctx.helpers = modules.new {
    dir = modules.dir_of(ctx.path), dsl = runbook.dsl_table(env),
    -- Host and stdlib modules would really run: inert stand-ins.
    host = function(name)
      local host = require "kmsrun.run.host_access"
      if not host.granted(spec.header) then mistake(ctx, host.message("require '" .. name .. "'")) end
      return unknown.new("require " .. name)
    end,
    -- Any other module: reported like at run time without host access, inert with it.
    fallback = function(name)
      local host = require "kmsrun.run.host_access"
      if not host.granted(spec.header) then api.usage_error(host.message("require '" .. name .. "'")) end
      return unknown.new("require " .. name)
    end,
    env = function()
      return runbook.module_environment(req, function(name, known)
        local hint = api.functions[name] and (" (a helper module gets the DSL explicitly: local dsl = require \"kmsrun.dsl\")")
          or (api.suggest(name, known) and (" (did you mean '" .. api.suggest(name, known) .. "'?)") or "")
        mistake(ctx, string.format("unknown name '%s'%s", name, hint))
        return unknown.new(name)
      end)
    end,
  }
  env.require = function(name)
    local ok, r = pcall(req, name)
    if ok then return r end
    record_error(ctx, r)
    return unknown.new("require " .. tostring(name))
  end
  ctx.known = runbook.known_names(env)
  return setmetatable(env, {
    __index = function(_, name)
      name = tostring(name)
      local line = ctx.issues:line_of(api.runbook_location())
      local key = "name:" .. tostring(line) .. ":" .. name
      -- The static pass saw this name first, with the locals in scope: its suggestion wins.
      local best = ctx.suggestions[key]
      if best == nil then best = api.suggest(name, ctx.known) or false end
      ctx.issues:add(line, string.format("unknown name '%s'%s", name, best and (" (did you mean '" .. best .. "'?)") or ""), key)
      -- Carry on as if the suggestion was meant, so its arguments are still checked.
      if best and type(rawget(env, best)) == "function" then return rawget(env, best) end
      return unknown.new(name)
    end,
  })
end

return M
