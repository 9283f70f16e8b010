-- What the terminal shows: live progress (case, step, pass/fail) and, on a
-- failure, the expected and the actual. Everything else goes to the bundle.
-- Every value is scrubbed before it is formatted (indented, cut): the terminal's
-- own scrubber (report/terminal.lua) sees only the formatted text, in which an
-- indented PEM is no longer the key it knows.
local redact = require "kmsrun.report.redact"

local text = require "kmsrun.report.text"

local function v(s) return text.cap(redact.scrub(tostring(s)), text.TERMINAL_MAX) end

local Console = {}
Console.__index = Console

local M = {}

function M.new(opts)
  return setmetatable({ quiet = opts.quiet, verbose = opts.verbose, out = opts.console_stream or io.stdout }, Console)
end

function Console:write(...)
  self.out:write(...)
  self.out:flush()
end

function Console:line(s)
  if not self.quiet then self:write(s, "\n") end
end

function Console:banner(run)
  self:line(string.format("kmsrun %s: %s on target %s (%s)", run.version, v(run.runbook.path), run.target.name, run.target.summary))
  self:line("output: " .. v(run.evidence.dir))
end

function Console:case_start(case, index, total)
  self:line(string.format("\ncase %d/%d: %s", index, total, v(case.name)))
end

function Console:section(name)
  self:line("\n" .. v(name))
end

function Console:step_start(step)
  if self.verbose then self:line("  ... " .. v(step.name)) end
end

local function indent(s, prefix)
  return (v(s):gsub("\n", "\n" .. prefix))
end

function Console:step_end(step)
  local mark = ({ passed = "ok  ", failed = "FAIL", error = "ERR ", interrupted = "INT ", timeout = "TIME" })[step.status] or step.status
  local line = string.format("  [%s] %s (%.0f ms)", mark, v(step.name), (step.duration or 0) * 1000)
  if step.status == "passed" then
    self:line(line)
    return
  end
  -- Failures are shown even in quiet mode.
  self:write(line, "\n")
  if step.location then self:write("         at ", v(step.location), "\n") end
  if step.expected ~= nil then self:write("         expected: ", indent(step.expected, "                   "), "\n") end
  if step.actual ~= nil then self:write("         actual:   ", indent(step.actual, "                   "), "\n") end
  if step.last_rpc then self:write("         last rpc: ", indent(step.last_rpc, "                   "), "\n") end
  if step.detail then self:write("         ", indent(step.detail, "         "), "\n") end
end

function Console:case_end(case)
  local s = string.upper(case.status)
  if case.status == "passed" then
    self:line(string.format("  %s (%.2f s)", s, case.duration or 0))
  else
    self:write(string.format("  %s (%.2f s)%s\n", s, case.duration or 0, case.error and (": " .. indent(case.error, "    ")) or ""))
  end
end

function Console:progress(msg)
  if not self.quiet then self:write("  ... ", v(msg), "\n") end
end

function Console:summary(run, counts)
  if run.error then self:write("\nerror: ", indent(run.error, "  "), "\n") end
  self:write(string.format("\ncases: %d passed, %d failed, %d skipped\n", counts.passed, counts.failed, counts.skipped))
  -- Never a file that was not written (a full disk): the reason is on stderr.
  if run.evidence.files["report.json"] then
    self:write(string.format("report: %s\n", v(run.evidence:path("report.json"))))
  else
    self:write("report: NOT written (see the error above)\n")
  end
  if run.archive_path then self:write("evidence: ", v(run.archive_path), "\n")
  else self:write("evidence: NOT written (see the error above)\n") end
end

return M
