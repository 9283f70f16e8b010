-- The dry DSL: a stand-in for every run-time action of dsl/actions.lua and
-- dsl/expect.lua that checks its arguments with the same api.define specs
-- (api.check_args), checks what the world would have to look like for the call
-- to work (deployed, mode, waited for, attestation captured), records the step
-- for `kmsrun plan`, and returns a plausible placeholder. It does nothing else:
-- no process, no socket, no file.
--
-- A mistake is recorded and the case goes on, so one run reports every mistake
-- a case makes rather than the first. This file binds the stand-ins (define, the
-- kit they share) and holds the flow and evidence ones; dry_instances.lua and
-- dry_checks.lua hold the others.
local api = require "kmsrun.dsl.api"
local unknown = require "kmsrun.cli.check.unknown"
local render = require "kmsrun.cli.check.render"
local issues = require "kmsrun.cli.check.issues"

local M = {}

-- Actions that need no run and work while the runbook loads: deny_all() builds
-- an auth server's initial policy, secret() marks a value.
local AT_LOAD = { deny_all = true, secret = true }

local function list(a)
  local out = {}
  for i = 1, a.n do out[#out + 1] = a[i] end
  return out
end

--- The dry actions, bound to ctx = {issues =, world =, phase =, secrets =}.
function M.new(ctx)
  local A = {}
  local world = ctx.world

  local function where() return api.runbook_location() end
  local function mistake(msg, key) ctx.issues:add_at(where(), msg, key) end
  local function show(v) return render.value(v, ctx.secrets) end
  local function record(text) return world:record(text, ctx.issues:line_of(where())) end
  local function show_args(a)
    local parts = {}
    for i = 1, a.n do parts[#parts + 1] = show(a[i]) end
    return table.concat(parts, ", ")
  end

  -- Checks a usage error raised by api.check_args: recorded, not raised.
  local function usage(e)
    if type(e) == "table" and e.usage then ctx.issues:add_located(e.message) return end
    error(e, 0)
  end

  local function deployed(h, what)
    local s = world:state(h)
    if not s.deployed then
      mistake(string.format("%s: %s is not deployed yet (call deploy(%s) first)", what, h.name, h.name))
      return nil
    end
    return s
  end

  local function waited(h, s, what)
    if not s.ready then
      mistake(string.format("%s: %s was not waited for after %s (call wait_ready(%s) first)", what, h.name,
        s.since == "finish" and ("finish(" .. h.name .. ")") or ("deploy(" .. h.name .. ")"), h.name))
    end
  end

  -- Runs fn for its effect on the world only: the mistakes it would report are
  -- consequences of one already reported.
  local function quietly(fn)
    local real = ctx.issues
    ctx.issues = issues.new(real.short_src)
    local r = table.pack(pcall(fn))
    ctx.issues = real
    if r[1] then return table.unpack(r, 2, r.n) end
    return nil
  end
  ctx.quietly = quietly

  -- opts.vague: run even when an argument is an unknown (flow functions run their
  -- function arguments); opts.check: a replacement for api.check_args.
  local function define(name, impl, opts)
    opts = opts or {}
    local rec = api.functions[name]
    A[name] = function(...)
      local a = table.pack(...)
      if ctx.phase == "load" and not AT_LOAD[name] then
        mistake(string.format("%s: actions run inside setup, a case or teardown, not while the runbook is loading", name))
        -- Replayed at the start of the dry run, so what it meant to do is done.
        ctx.load_actions[#ctx.load_actions + 1] = function() return impl(a) end
        return unknown.new(name .. "(...)")
      end
      local vague = false
      for i = 1, a.n do if unknown.is(a[i]) then vague = true end end
      if not vague then
        local ok, e = pcall(opts.check or api.check_args, rec, a)
        if not ok then
          usage(e)
          -- Carry on as if the call had been right, as far as its arguments allow.
          local r = table.pack(quietly(function() return impl(a) end))
          if r.n > 0 and r[1] ~= nil then return table.unpack(r, 1, r.n) end
          return unknown.new(name .. "(...)")
        end
      elseif not opts.vague then
        record(name .. " " .. show_args(a))
        return unknown.new(name .. "(...)")
      end
      return impl(a)
    end
  end

  -- The stand-ins, by group: instances (topology, RPC), policies and expectations,
  -- then flow and evidence here.
  local kit = { ctx = ctx, world = world, define = define, mistake = mistake, record = record, show = show,
    deployed = deployed, waited = waited, where = where, list = list }
  require("kmsrun.cli.check.dry_instances").define(kit)
  require("kmsrun.cli.check.dry_checks").define(kit)

  -- Flow and evidence -----------------------------------------------------------------

  define("parallel", function(a)
    local step = record("parallel")
    local results = {}
    world:nest(step, function()
      for i = 1, a.n do
        if type(a[i]) == "function" then results[i] = (a[i]()) end
      end
    end)
    return table.unpack(results, 1, a.n)
  end, { vague = true })

  define("step", function(a)
    local step = record("step " .. show(a[1]))
    if type(a[2]) ~= "function" then return unknown.new("step") end
    return world:nest(step, a[2])
  end, { vague = true })

  define("sleep", function(a) record("sleep " .. tostring(a[1]) .. " s") end)

  define("log", function(a)
    local ok, msg = pcall(string.format, table.unpack(a, 1, a.n))
    record("log " .. show(ok and msg or a[1]))
  end, { vague = true })

  define("save", function(a)
    record("save saved/" .. a[1] .. ".json")
    return "<output>/saved/" .. a[1] .. ".json"
  end)

  define("secret", function(a)
    ctx.secrets[a[1]] = "[secret]"
    return a[1]
  end)

  define("archive", function()
    record("archive")
    return "<output>/evidence.tar.gz"
  end)

  -- Any action defined later gets at least the argument check and a step.
  for _, name in ipairs(api.order) do
    local rec = api.functions[name]
    if rec.group ~= "declare" and not A[name] then
      define(name, function(a)
        record(name .. " " .. show_args(a))
        return unknown.new(name .. "(...)")
      end)
    end
  end

  return A
end

return M
