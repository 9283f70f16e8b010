-- Reading a run's cleanup ledger (OUTDIR/ledger.ndjson) for `kmsrun cleanup`.
-- The ledger is data anyone with the directory could have written: reading it
-- never raises (tests/fuzz/fuzz_ledger.c), whatever the lines hold.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"

local M = {}

--- Reads the ledger: the registrations in order with their state. An "undone" or
-- "undo_failed" line refers to the registration at `line` when it says so (lines
-- written here do), else to the latest registration with its id before it (a
-- reused output directory holds several runs, whose ids restart at 1).
function M.read(dir)
  local text, err = fs.read("ledger.ndjson", { beneath = dir })
  if not text then return nil, err end
  local regs, latest, bad = {}, {}, {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line ~= "" then
      local e = json.decode(line)
      if type(e) == "table" then
        -- cjson decodes every number as a float; ids and line numbers are integers.
        e.id = math.tointeger(e.id) or e.id
        e.line = math.tointeger(e.line) or e.line
      end
      if type(e) ~= "table" or type(e.action) ~= "string" then
        bad[#bad + 1] = n
      elseif e.action == "run" then
        regs.run = regs.run or e -- who wrote the ledger (the first run line counts)
      elseif e.action == "register" then
        local r = { line = n, id = e.id, description = tostring(e.description or "?"), undo = e.undo, time = e.time, state = "pending" }
        regs[#regs + 1] = r
        regs["line" .. n] = r
        latest[tostring(e.id)] = r
      elseif e.action == "undone" or e.action == "undo_failed" then
        local r = (e.line and regs["line" .. tostring(e.line)]) or latest[tostring(e.id)]
        if r then r.state = e.action == "undone" and "undone" or "failed" end
      end
    end
  end
  if text ~= "" and text:sub(-1) ~= "\n" then
    -- The run was killed in the middle of a line: it cannot have been acted on.
    bad.torn = true
  end
  return regs, bad
end

return M
