-- What the dry run knows about the world while it walks a runbook: for each KMS
-- handle whether it is deployed, its mode (onboard / runtime), whether it was
-- waited for since it last changed, whether its attestation was captured; and
-- the steps each block would take, for `kmsrun plan`. Nothing here touches
-- anything outside this table.
local M = {}

local World = {}
World.__index = World

-- Fields the dry actions set on the declared handles, as the real ones do
-- (runbooks read src.attestation, src.mode, ...); cleared between simulations.
local HANDLE_FIELDS = { "deployed", "onboard_url", "runtime_url", "guest", "attestation", "auth_url" }

function M.new(spec)
  return setmetatable({ spec = spec, used = {} }, World)
end

--- Starts a fresh simulation: nothing deployed, no steps recorded.
function World:reset()
  self.stack = nil
  self.kms, self.deployed, self.policy_sets, self.rpc_count = {}, {}, {}, 0
  for _, h in ipairs(self.spec.kmss) do
    for _, f in ipairs(HANDLE_FIELDS) do h[f] = nil end
    h.deployed, h.mode = false, "onboard"
  end
end

--- The dry state of a KMS handle: {deployed, mode, ready, attested}.
function World:state(h)
  local s = self.kms[h]
  if not s then
    s = { deployed = false, mode = "onboard", ready = false, attested = false }
    self.kms[h] = s
  end
  self.used[h] = true
  return s
end

--- Starts recording the steps of a block (setup, a case, teardown).
function World:begin(block)
  local rec = { block = block, steps = {} }
  self.stack = { rec.steps }
  return rec
end

--- Records one step at a runbook line; returns it (its children hold nested steps).
function World:record(text, line)
  local step = { text = text, line = line, children = {} }
  local top = self.stack and self.stack[#self.stack] -- none while replaying
  if top then top[#top + 1] = step end
  return step
end

--- Runs fn with the steps it records nested under step.
function World:nest(step, fn, ...)
  self.stack[#self.stack + 1] = step.children
  local results = table.pack(pcall(fn, ...))
  self.stack[#self.stack] = nil
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

return M
