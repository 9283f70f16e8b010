-- The dry stand-ins of the instance actions (topology and RPC: deploy, wait_ready,
-- capture_attestation, rpc, finish, source_url): they follow each handle's state in the
-- world (deployed, mode, waited for, attested) and report a call the state forbids.
-- Bound by cli/check/dry.lua, which passes its kit d (define, mistake, record, ...).
local unknown = require "kmsrun.cli.check.unknown"
local methods = require "kmsrun.cli.check.methods"
local placeholders = require "kmsrun.cli.check.placeholders"
local render = require "kmsrun.cli.check.render"

local M = {}

-- Splits wait_ready's arguments into handles and the trailing options table.
-- actions.lua checks these by hand: the spec cannot yet say "handles, then an
-- options table" (see the report).
local function split_options(a)
  local last = a[a.n]
  if a.n > 0 and type(last) == "table" and rawget(last, "__kind") == nil and not unknown.is(last) then
    return table.pack(table.unpack(a, 1, a.n - 1)), last
  end
  return a, nil
end

function M.define(d)
  local define, mistake, record, show = d.define, d.mistake, d.record, d.show
  local world, list = d.world, d.list
  local ctx, deployed, waited, where = d.ctx, d.deployed, d.waited, d.where

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
end

return M
