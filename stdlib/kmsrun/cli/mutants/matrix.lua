-- The mutation matrix of `kmsrun mutants`: which case catches which switch, from
-- the report.json of the unmutated run and of one run per switch.
local json = require "kmsrun.lib.json"

local M = {}

--- The switches to run: every one of the emulators' registry, or those named in
-- `only`. Returns a list of {name, check, description} or nil, error.
function M.switches(only)
  local ok, registry = pcall(require, "kmsrun.emu.mutations")
  local all = {}
  if ok then
    all = registry.list()
  else
    -- Before the registry existed, the KMS emulator's own table was the list.
    local names = {}
    for name in pairs(require("kmsrun.emu.kms.faults").MUTATIONS) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      all[#all + 1] = { name = name, description = require("kmsrun.emu.kms.faults").MUTATIONS[name] }
    end
  end
  if not only or #only == 0 then return all end
  local out = {}
  for _, want in ipairs(only) do
    local found
    for _, s in ipairs(all) do if s.name == want then found = s end end
    if not found then
      local known = {}
      for _, s in ipairs(all) do known[#known + 1] = s.name end
      return nil, "unknown switch '" .. want .. "' (known: " .. table.concat(known, ", ") .. ")"
    end
    out[#out + 1] = found
  end
  return out
end

-- Every case a case needs, transitively (needs: id -> list of ids).
local function all_needs(needs, id, out)
  out = out or {}
  for _, n in ipairs(needs[id] or {}) do
    if not out[n] then out[n] = true; all_needs(needs, n, out) end
  end
  return out
end

--- Classifies one run's case under a switch: "X" it fails on its own, "x" it fails
-- because a case it needs failed (a consequence, not a catch), "?" it failed after
-- an earlier case failed, so state may be why (settle it alone: M.settle), "."
-- passes, "s" skipped or not run.
local function classify(r, base, needs, id, earlier_failed)
  local st = r.cases[id]
  if st == nil or st == "skipped" then return "s" end
  if st == "passed" or base.cases[id] ~= "passed" then return "." end
  for n in pairs(all_needs(needs, id)) do
    if r.cases[n] ~= "passed" then return "x" end
  end
  if earlier_failed then return "?" end
  return "X"
end

--- Builds the matrix. results: name -> run (see commands/mutants.lua), with
-- results.baseline the unmutated run; needs: case id -> ids it needs.
-- Returns {ok, cases, rows, uncaught, unfailed, baseline}; each row's `unsettled`
-- lists the case ids to run alone (M.settle) before the verdicts are final.
function M.build(results, switches, needs)
  local base = results.baseline or { error = "not run" }
  local m = { baseline = base, cases = base.case_list or {}, rows = {}, needs = needs or {} }
  m.baseline_ok = base.status == "passed" and not base.error
  for _, s in ipairs(switches) do
    local r = results[s.name] or { error = "not run" }
    local row = { switch = s, run = r, marks = {}, unsettled = {} }
    if r.error then
      row.note = "run error: " .. r.error
    else
      row.setup_failed = r.setup_status ~= nil and r.setup_status ~= "passed"
      local earlier_failed = false
      for _, c in ipairs(m.cases) do
        local mark = classify(r, base, m.needs, c.id, earlier_failed)
        row.marks[c.id] = mark
        if mark == "?" then row.unsettled[#row.unsettled + 1] = c.id end
        if r.cases[c.id] ~= nil and r.cases[c.id] ~= "passed" and r.cases[c.id] ~= "skipped" then earlier_failed = true end
      end
    end
    m.rows[#m.rows + 1] = row
  end
  return M.finish(m)
end

--- Settles a "?" cell with the run of that case alone (`--case ID`, with its needs).
function M.settle(m, row, id, alone)
  local mark = "x"
  if alone and not alone.error then
    local st = alone.cases[id]
    local needs_ok = true
    for n in pairs(all_needs(m.needs, id)) do if alone.cases[n] ~= "passed" then needs_ok = false end end
    if st ~= nil and st ~= "passed" and st ~= "skipped" and needs_ok then mark = "X" end
  end
  row.marks[id] = mark
end

--- Computes the verdicts from the marks.
function M.finish(m)
  m.uncaught, m.unfailed = {}, {}
  local failed_somewhere = {}
  for _, row in ipairs(m.rows) do
    row.caught_by = {}
    if row.setup_failed then row.caught_by[1] = "setup" end
    for _, c in ipairs(m.cases) do
      if row.marks[c.id] == "X" then
        row.caught_by[#row.caught_by + 1] = c.id
        failed_somewhere[c.id] = true
      end
    end
    if #row.caught_by == 0 then m.uncaught[#m.uncaught + 1] = row.switch.name end
  end
  for _, c in ipairs(m.cases) do
    if not failed_somewhere[c.id] then m.unfailed[#m.unfailed + 1] = c end
  end
  m.ok = m.baseline_ok and #m.uncaught == 0
  return m
end

--- The matrix as text for the terminal.
function M.render(m)
  local out = {}
  local function w(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  if not m.baseline_ok then
    w("the runbook does not pass without a mutation (%s); fix that first: a matrix of a failing runbook means nothing",
      m.baseline.error or ("status " .. tostring(m.baseline.status) .. ", see " .. tostring(m.baseline.out)))
  end
  local width = 0
  for _, row in ipairs(m.rows) do width = math.max(width, #row.switch.name) end
  local header = { string.rep(" ", width) .. "  case" }
  for _, c in ipairs(m.cases) do header[#header + 1] = string.format("%3d", c.id) end
  w("mutation matrix (X: the case fails under the switch; x: it fails only because a case it needs, or an earlier")
  w("case, failed: not a catch; .: passes; s: skipped or not run)")
  w("%s", table.concat(header))
  for _, row in ipairs(m.rows) do
    local cells = { string.format("%-" .. width .. "s      ", row.switch.name) }
    for _, c in ipairs(m.cases) do cells[#cells + 1] = string.format("%3s", row.marks[c.id] or "?") end
    local verdict
    if row.note then verdict = row.note
    elseif #row.caught_by == 0 then verdict = "NOT CAUGHT" .. (row.switch.check and (": nothing fails without " .. row.switch.check) or "")
    else
      local by = {}
      for _, id in ipairs(row.caught_by) do by[#by + 1] = tostring(id) end
      verdict = "caught by " .. table.concat(by, ", ")
    end
    w("%s   %s", table.concat(cells), verdict)
  end
  w("cases:")
  for _, c in ipairs(m.cases) do w("  %d. %s", c.id, c.name) end
  for _, c in ipairs(m.unfailed) do
    w("case %d \"%s\" is failed by no switch: nothing shows it can fail on the emulator", c.id, c.name)
  end
  if #m.uncaught > 0 then
    w("%d of %d switches caught by no case: %s", #m.uncaught, #m.rows, table.concat(m.uncaught, ", "))
  elseif m.baseline_ok then
    w("every switch (%d) is caught by at least one case", #m.rows)
  end
  return table.concat(out, "\n") .. "\n"
end

--- The matrix as a JSON value (mutants.json).
function M.to_json(m)
  local rows = {}
  for _, row in ipairs(m.rows) do
    local by = json.array()
    for i, v in ipairs(row.caught_by) do by[i] = v end
    rows[#rows + 1] = { switch = row.switch.name, check = row.switch.check, caught_by = by,
      error = row.run.error, exit_code = row.run.exit_code, out = row.run.out, seconds = row.run.seconds }
  end
  local unfailed, uncaught = json.array(), json.array()
  for _, c in ipairs(m.unfailed) do unfailed[#unfailed + 1] = c.id end
  for i, name in ipairs(m.uncaught) do uncaught[i] = name end
  return { ok = m.ok, baseline = { status = m.baseline.status, exit_code = m.baseline.exit_code, out = m.baseline.out },
    switches = json.array(rows), uncaught = uncaught, cases_failed_by_no_switch = unfailed }
end

return M
