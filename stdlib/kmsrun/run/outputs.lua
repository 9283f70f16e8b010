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
  self.outputs_failed = nil
  local function failed(what, err)
    io.stderr:write("kmsrun: cannot write ", what, ": ", tostring(err), "\n")
    self.outputs_failed = self.outputs_failed or {}
    self.outputs_failed[#self.outputs_failed + 1] = what
  end
  local ok, err = self.evidence:json("report.json", report.build(self))
  if not ok then failed("the report", err) end
  -- Values scrubbed before they were escaped (report/results.lua): written as is.
  ok, err = self.evidence:write("junit.xml", report.junit(self), { scrubbed = true })
  if not ok then failed("junit.xml", err) end
  -- Every file passes the scrubber again before it is archived: the logs others
  -- wrote (the emulators', the auth servers' decision logs), and what was written
  -- before a value in it was marked secret (attestation captured, then secret()).
  for _, rel in ipairs(self.evidence:list()) do
    if rel ~= "report.json" and rel ~= "junit.xml" and rel ~= "MANIFEST.sha256" and not rel:match("%.tar%.gz$") then
      self.evidence:scrub_file(rel)
    end
  end
  local name = self.evidence.dir:match("([^/]+)/*$")
  local path, err = self.evidence:archive(name)
  if not path then failed("the archive", err) end
  self.archive_path = path
  return path
end

--- The exit code once the outputs are written: a run whose report, junit.xml or
-- archive could not be written (a full disk) is an infrastructure error, never a
-- pass; report.json is rewritten with that code when it can be.
function Run:fail_if_unwritten(code)
  local exit_codes = require "kmsrun.run.exit_codes"
  if not self.outputs_failed then return code end
  if code == exit_codes.OK or code == exit_codes.FAILED or code == exit_codes.CLEANUP then
    code = exit_codes.INFRA
    self.exit_code, self.status = code, exit_codes.status(code)
    self.error = self.error or ("could not write " .. table.concat(self.outputs_failed, ", "))
    self.evidence:json("report.json", report.build(self))
  end
  return code
end

return M
