-- What every DSL action starts from: the run it acts in (refused while the runbook
-- loads), a deployed instance, an evidence name that stays in the output directory,
-- and the names of handles for a step's title. Shared by dsl/actions.lua and
-- dsl/topology.lua.
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"

local M = {}

-- An evidence name from the runbook must name a file inside the output directory.
function M.check_save_name(what, name)
  local bad = require("kmsrun.report.evidence").check_name(name)
  if bad then api.usage_error(what .. ": " .. bad) end
end

--- The running Run; `what` names the actions in the error raised while the runbook loads.
function M.run(what)
  local ctx = steps.context()
  if not ctx or not ctx.run then
    -- Called while the runbook loads (declarations only): say so at the runbook's line.
    api.usage_error((what or "actions (deploy, wait_ready, rpc, set_policy, step, sleep, log, save, archive, parallel, ...)")
      .. " run only inside setup(), a case or teardown(), not while the runbook loads")
  end
  return ctx.run
end

function M.names(hs)
  local n = {}
  for _, h in ipairs(hs) do n[#n + 1] = h.name end
  return table.concat(n, ", ")
end

function M.require_deployed(h, what)
  if not h.deployed then
    api.usage_error(string.format("%s: %s is not deployed yet (call deploy(%s) first)", what, h.name, h.name))
  end
end

return M
