-- Runs a runbook's blocks against the dry DSL, in the order a run would: setup,
-- the selected cases, teardown. The world carries over from block to block as
-- it would at run time (what setup deploys, case 2 finds deployed). A Lua error
-- ends only its own block; it is recorded and the next block runs.
local api = require "kmsrun.dsl.api"

local M = {}

local function describe(block)
  if block.kind == "case" then return string.format("case %q", block.name) end
  return block.kind
end

local function run_block(ctx, block)
  local rec = ctx.world:begin(block)
  local ok, e = xpcall(block.fn, function(err)
    if type(err) == "table" and err.usage then return err end
    return { location = api.runbook_location(), message = tostring(err) }
  end)
  if not ok then
    if e.usage then
      ctx.issues:add_located(e.message)
    else
      local _, msg = ctx.issues:split(e.message)
      msg = msg:gsub("^[^\n]-:%d+: ", "")
      ctx.issues:add_at(e.location, string.format("error in %s: %s", describe(block), msg))
    end
    rec.error = true
  end
  return rec
end

--- Simulates setup, cases (a list) and teardown from a fresh world; returns the
-- recordings {block =, steps = {{text =, line =, children =}}, error =}.
function M.run(ctx, cases)
  local spec = ctx.spec
  ctx.world:reset()
  ctx.phase = "run"
  -- Actions misplaced at the top level (already reported) take effect first.
  for _, fn in ipairs(ctx.load_actions) do ctx.quietly(fn) end
  local out = {}
  if spec.setup then
    spec.setup.kind = "setup"
    out[#out + 1] = run_block(ctx, spec.setup)
  end
  for _, c in ipairs(cases) do
    c.kind = "case"
    out[#out + 1] = run_block(ctx, c)
  end
  if spec.teardown then
    spec.teardown.kind = "teardown"
    out[#out + 1] = run_block(ctx, spec.teardown)
  end
  return out
end

return M
