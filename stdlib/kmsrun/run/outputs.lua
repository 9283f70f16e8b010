-- The run's written results: report.json, junit.xml, the archive, and the
-- rule for a stream of the output directory that cannot be written.
local time = require "kmsrun.time"
local report = require "kmsrun.report.results"

local Run = {} -- the methods, mixed into run/runner.lua's Run
local M = { methods = Run }

-- A stream of the output directory that cannot be written (full disk, a
-- directory in the way) makes the evidence incomplete and `kmsrun cleanup` blind:
-- said once on the terminal, and the run ends as an infrastructure error.
function Run:check_written(rel, ok, err)
  if ok then return end
  self.infra_error = true
  self.output_errors = self.output_errors or {}
  if self.output_errors[rel] then return end
  self.output_errors[rel] = true
  io.stderr:write("kmsrun: cannot write ", self.evidence:path(rel), ": ", tostring(err),
    "; the evidence is incomplete, failing the run\n")
end

--- Counts the selected cases by outcome (a case not run yet counts as skipped).
function Run:tally()
  local counts = { passed = 0, failed = 0, skipped = 0 }
  for _, c in ipairs(self.selected_cases or {}) do
    if c.status == "passed" then counts.passed = counts.passed + 1
    elseif c.status == "skipped" or c.status == nil then counts.skipped = counts.skipped + 1
    else counts.failed = counts.failed + 1 end
  end
  self.counts = counts
  return counts
end

--- Writes report.json, junit.xml and the archive; returns the archive path.
-- Also called mid-run by the DSL's archive() (e.g. from a teardown).
function Run:write_outputs()
  self.duration = time.now() - self.started
  self:tally()
  local ok, err = self.evidence:json("report.json", report.build(self))
  if not ok then io.stderr:write("kmsrun: cannot write the report: ", tostring(err), "\n") end
  ok, err = self.evidence:write("junit.xml", report.junit(self))
  if not ok then io.stderr:write("kmsrun: cannot write junit.xml: ", tostring(err), "\n") end
  for _, h in ipairs(self.runbook.kmss) do
    if h.log_path then self.evidence:scrub_file("logs/" .. h.name .. ".log") end
  end
  local name = self.evidence.dir:match("([^/]+)/*$")
  local path, err = self.evidence:archive(name)
  if not path then io.stderr:write("kmsrun: cannot write the archive: ", tostring(err), "\n") end
  self.archive_path = path
  return path
end

return M
