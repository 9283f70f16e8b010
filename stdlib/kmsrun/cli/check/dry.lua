-- The dry DSL: a stand-in for every run-time action of dsl/actions.lua and
-- dsl/expect.lua that checks its arguments with the same api.define specs
-- (api.check_args), checks what the world would have to look like for the call
-- to work (deployed, mode, waited for, attestation captured), records the step
-- for `kmsrun plan`, and returns a plausible placeholder. It does nothing else:
-- no process, no socket, no file.
--
-- A mistake is recorded and the case goes on, so one run reports every mistake
-- a case makes rather than the first.
local api = require "kmsrun.dsl.api"
local policies = require "kmsrun.kms.policies"
local policy_check = require "kmsrun.dsl.policy_check"
local unknown = require "kmsrun.cli.check.unknown"
local methods = require "kmsrun.cli.check.methods"
local placeholders = require "kmsrun.cli.check.placeholders"
local render = require "kmsrun.cli.check.render"
local issues = require "kmsrun.cli.check.issues"

local M = {}

-- wait_ready's trailing options table. actions.lua checks these by hand: the
-- spec cannot yet say "handles, then an options table" (see the report).

-- Actions that need no run and work while the runbook loads: deny_all() builds
-- an auth server's initial policy, secret() marks a value.
local AT_LOAD = { deny_all = true, secret = true }

local function list(a)
  local out = {}
  for i = 1, a.n do out[#out + 1] = a[i] end
  return out
end

-- Splits wait_ready's arguments into handles and the trailing options table.
local function split_options(a)
  local last = a[a.n]
  if a.n > 0 and type(last) == "table" and rawget(last, "__kind") == nil and not unknown.is(last) then
    return table.pack(table.unpack(a, 1, a.n - 1)), last
  end
  return a, nil
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

  -- Topology ------------------------------------------------------------------------

  define("deploy", function(a)
    if a.n == 0 then mistake("deploy: give at least one kms handle") end
    local hs = list(a)
    for _, h in ipairs(hs) do
      local s = world:state(h)
      if s.deployed then
        mistake(string.format("deploy: %s is already deployed", h.name))
      else
        s.deployed, s.mode, s.ready, s.since = true, "onboard", false, "deploy"
        s.deployed_line = ctx.issues:line_of(where())
        world.deployed[#world.deployed + 1] = h
        h.deployed, h.mode = true, "onboard"
        h.onboard_url = "<onboard URL of " .. h.name .. ">"
        h.runtime_url = "<runtime URL of " .. h.name .. ">"
        h.guest = { onboard_url = h.onboard_url, runtime_url = h.runtime_url }
      end
    end
    record("deploy " .. render.names(hs))
  end)

  define("wait_ready", function(a)
    local args, o = split_options(a)
    local hs, shown = list(args), {}
    if #hs == 0 then mistake("wait_ready: give at least one kms handle") end
    for _, h in ipairs(hs) do
      local s = deployed(h, "wait_ready")
      if s then s.ready = true end
      shown[#shown + 1] = h.name .. " (" .. (s and s.mode or "not deployed") .. ")"
    end
    record("wait_ready " .. table.concat(shown, ", ") .. (o and (" " .. show(o)) or ""))
  end)

  define("capture_attestation", function(a)
    local hs = list(a)
    if #hs == 0 then mistake("capture_attestation: give at least one kms handle") end
    for _, h in ipairs(hs) do
      local s = deployed(h, "capture_attestation")
      if s then
        if s.mode ~= "onboard" then
          mistake(string.format("capture_attestation: %s is in runtime mode: Onboard.GetAttestationInfo is served only before finish(%s)",
            h.name, h.name))
        else
          waited(h, s, "capture_attestation")
        end
        s.attested = true
        h.attestation = placeholders.attestation(h)
      end
    end
    record("capture_attestation " .. render.names(hs))
  end)

  -- RPC ---------------------------------------------------------------------------

  define("rpc", function(a)
    local h, method, body, o = a[1], a[2], a[3], a[4] or {}
    world.rpc_count = world.rpc_count + 1
    local s = deployed(h, "rpc")
    local m = methods.by_name[method]
    if not m then
      local best = methods.suggest(method)
      mistake(string.format("rpc: unknown method '%s' (%s)", method,
        best and ("did you mean '" .. best .. "'?") or ("methods: " .. table.concat(methods.names, ", "))))
    else
      local berr = methods.check_body(m, body)
      if berr then mistake("rpc: " .. berr) end
      if s and m.mode ~= s.mode then
        if m.mode == "runtime" then
          mistake(string.format("rpc: %s is in onboard mode: %s is served only after finish(%s)", h.name, method, h.name))
        else
          mistake(string.format("rpc: %s is in runtime mode: %s is served only before finish(%s)", h.name, method, h.name))
        end
      elseif s then
        waited(h, s, "rpc")
      end
      if method == "Onboard.Finish" then
        mistake(string.format("rpc: call finish(%s) instead of rpc Onboard.Finish, so the handle switches to runtime mode", h.name))
        if s then s.mode, s.ready, s.since = "runtime", false, "finish" end
      end
    end
    local text = "rpc " .. h.name .. " " .. method
    if body ~= nil then text = text .. " " .. show(body) end
    if o.save ~= nil then text = text .. " -> rpc/" .. tostring(o.save) .. ".json" end
    record(text)
    return placeholders.response(h, method, m, mistake, body or "{}")
  end)

  define("finish", function(a)
    local h = a[1]
    local s = deployed(h, "finish")
    if s then
      if s.mode == "runtime" then
        mistake(string.format("finish: %s is already in runtime mode (finish was called before)", h.name))
      else
        waited(h, s, "finish")
      end
      s.mode, s.ready, s.since = "runtime", false, "finish"
      h.mode = "runtime"
    end
    record("finish " .. h.name)
  end)

  define("source_url", function(a)
    local h = a[1]
    deployed(h, "source_url")
    return "<runtime URL of " .. h.name .. ">/prpc"
  end)

  -- Policies ----------------------------------------------------------------------

  define("set_policy", function(a)
    local auth, policy = a[1], a[2]
    if rawget(policy, "__kind") ~= "policy" then
      local ok, err = policy_check.check(policy)
      -- Placeholders (an attestation not captured, a require'd value) are not typed.
      if not ok and not unknown.within(policy, true) then mistake("set_policy: " .. err) end
      policy = policies.custom(policy)
    end
    world.policy_sets[#world.policy_sets + 1] = { auth = auth, policy = policy }
    record(string.format("set_policy %s = %s", auth.name, policy.description))
    return #world.policy_sets
  end)

  local function attested_policy(name, build)
    define(name, function(a)
      local hs, all = list(a), true
      for _, h in ipairs(hs) do
        if not world:state(h).attested then
          all = false
          mistake(string.format("%s: the attestation of %s has not been captured yet (call capture_attestation(%s) first)",
            name, h.name, h.name))
        end
      end
      -- The real builder describes the policy the way steps will name it.
      if all then return build(table.unpack(hs)) end
      return policies.custom({}, name .. "(" .. render.names(hs) .. ")")
    end)
  end
  attested_policy("allow", policies.allow)
  attested_policy("deny_by_mr", policies.deny_by_mr)
  define("deny_all", function() return policies.deny_all() end)
  define("policy", function(a)
    local ok, err = policy_check.check(a[2])
    if not ok and not unknown.within(a[2], true) then mistake(string.format("policy %q: %s", a[1], err)) end
    return policies.custom(a[2], a[1])
  end)

  -- Expectations ------------------------------------------------------------------

  local function about(res)
    return tostring(rawget(res, "__kms") or "?") .. " " .. tostring(rawget(res, "method") or "?")
  end

  define("expect_error", function(a)
    local res, spec = a[1], a[2]
    if type(spec) == "table" then
      if spec.equals == nil and spec.contains == nil and spec.pattern == nil and spec.any == nil then
        mistake("expect_error: give a prefix string or one of {equals=}, {contains=}, {pattern=}, {any=true}")
      end
      if type(spec.pattern) == "string" then
        local ok, err = pcall(string.find, "", spec.pattern)
        if not ok then mistake("expect_error: invalid pattern: " .. tostring(err):gsub("^.-: ", "")) end
      end
    end
    record("expect_error " .. about(res) .. " " .. show(spec))
    return "<RPC error of " .. about(res) .. ">"
  end)

  define("expect_ok", function(a)
    local res, fields = a[1], a[2]
    local m = methods.by_name[rawget(res, "method")]
    local names = {}
    for _, f in ipairs(fields or {}) do
      names[#names + 1] = tostring(f)
      if m and m.response and type(f) == "string" and not m.response.by_name[f] then
        local all = methods.field_names(m.response)
        local best = api.suggest(f, all)
        mistake(string.format("expect_ok: %s answers have no field '%s' (%s)", m.name, f,
          best and ("did you mean '" .. best .. "'?") or ("fields: " .. table.concat(all, ", "))))
      end
    end
    record("expect_ok " .. about(res) .. (#names > 0 and (" with " .. table.concat(names, ", ")) or ""))
    return res.body
  end)

  define("expect_eq", function(a)
    record("expect_eq " .. a[3])
    return a[1]
  end)

  define("expect", function(a)
    record("expect " .. a[2])
    return a[1]
  end)

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
