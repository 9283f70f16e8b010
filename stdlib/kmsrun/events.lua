-- The event stream (`--events FILE`): one JSON object per line for every case
-- and step start/end, RPC, policy change and cleanup action.
local json = require "kmsrun.json"
local redact = require "kmsrun.redact"
local time = require "kmsrun.time"

local M = {}
local sink -- function(line)
local seq = 0

function M.set_sink(fn) sink = fn; seq = 0 end

function M.emit(kind, data)
  if not sink then return end
  seq = seq + 1
  local ev = { seq = seq, time = time.wall(), event = kind }
  for k, v in pairs(data or {}) do ev[k] = v end
  sink(redact.scrub(json.encode(ev)) .. "\n")
end

return M
