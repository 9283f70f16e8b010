-- The cases of a loaded runbook: their `needs` (each must name an earlier case:
-- cases run in declaration order, so a later one cannot have run first), and
-- the selection --case / --tag makes, with the cases a selected one needs.
local api = require "kmsrun.dsl.api"

local M = {}

--- Records a mistake for every bad `needs` entry.
function M.check_needs(issues, cases)
  local index, names = {}, {}
  for i, c in ipairs(cases) do index[c.name] = index[c.name] or i; names[#names + 1] = c.name end
  for i, c in ipairs(cases) do
    local line = issues:line_of(c.location)
    if type(c.needs) ~= "table" then
      issues:add(line, "case: needs must be a list of case names, got " .. type(c.needs))
    else
      for _, need in ipairs(c.needs) do
        if type(need) ~= "string" then
          issues:add(line, "case: needs must be a list of case names, got a " .. type(need) .. " in it")
        elseif need == c.name then
          issues:add(line, string.format("case: %q needs itself", need))
        elseif not index[need] then
          local best = api.suggest(need, names)
          issues:add(line, string.format("case: needs %q, which is not a case%s", need,
            best and string.format(" (did you mean %q?)", best) or ""))
        elseif index[need] > i then
          issues:add(line, string.format("case: needs %q, which is declared after it (cases run in declaration order)", need))
        end
      end
    end
  end
end

--- The cases to run for selectors (numbers or name parts) and tags, in
-- declaration order, with the cases they need; or nil, error. Mirrors the
-- runner's selection, so `plan --case` shows what `--case` would run.
function M.select(cases, selectors, tags)
  local want = {}
  if #selectors == 0 and #tags == 0 then
    for _, c in ipairs(cases) do want[c] = true end
  else
    for _, sel in ipairs(selectors) do
      local matched = false
      -- A number selects that case only (not every name containing the digit).
      local by_id = sel:match("^%d+$")
      for _, c in ipairs(cases) do
        if tostring(c.id) == sel or c.name == sel or (not by_id and c.name:lower():find(sel:lower(), 1, true)) then
          want[c], matched = true, true
        end
      end
      if not matched then return nil, "no case matches --case " .. sel end
    end
    for _, tag in ipairs(tags) do
      for _, c in ipairs(cases) do
        for _, t in ipairs(c.tags) do if t == tag then want[c] = true end end
      end
    end
    M.add_needs(cases, want)
  end
  local out = {}
  for _, c in ipairs(cases) do if want[c] then out[#out + 1] = c end end
  -- A run that runs nothing must not pass: an empty runbook, /dev/null or a
  -- misspelt --tag would otherwise be a green CI job that checked nothing.
  if #out == 0 then return nil, M.nothing_selected(cases, tags) end
  return out
end

--- Why a selection is empty, for the error message.
function M.nothing_selected(cases, tags)
  if #cases == 0 then return "the runbook declares no case: nothing to run (a run with no case is not a pass)" end
  local seen, known = {}, {}
  for _, c in ipairs(cases) do
    for _, t in ipairs(c.tags or {}) do
      if not seen[t] then seen[t] = true; known[#known + 1] = t end
    end
  end
  table.sort(known)
  return string.format("no case has %s %s (tags in the runbook: %s): nothing to run",
    #tags == 1 and "the tag" or "any of the tags", table.concat(tags, ", "), #known > 0 and table.concat(known, ", ") or "none")
end

--- Adds to the set want (case -> true) every case a wanted case needs, transitively.
function M.add_needs(cases, want)
  local changed = true
  while changed do
    changed = false
    for _, c in ipairs(cases) do
      if want[c] and type(c.needs) == "table" then
        for _, need in ipairs(c.needs) do
          for _, d in ipairs(cases) do
            if d.name == need and not want[d] then want[d], changed = true, true end
          end
        end
      end
    end
  end
  return want
end

return M
