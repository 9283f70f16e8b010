-- The dry stand-ins of the policy builders and the expectations (set_policy, allow,
-- deny_by_mr, deny_all, policy, expect_*): they check a policy's shape and that the
-- attestation it names was captured, and an expectation's spec against the method's
-- response schema. Bound by cli/check/dry.lua, which passes its kit d.
local api = require "kmsrun.dsl.api"
local policies = require "kmsrun.kms.policies"
local policy_check = require "kmsrun.dsl.policy_check"
local unknown = require "kmsrun.cli.check.unknown"
local methods = require "kmsrun.cli.check.methods"
local render = require "kmsrun.cli.check.render"

local M = {}

function M.define(d)
  local define, mistake, record, show = d.define, d.mistake, d.record, d.show
  local world, list = d.world, d.list

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
end

return M
