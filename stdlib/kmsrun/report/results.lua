-- report.json (the machine-readable result) and junit.xml (for CI systems).
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local cap = require("kmsrun.report.text").cap

local M = {}

M.SCHEMA_VERSION = 1

local function step_record(s)
  return {
    name = s.name, status = s.status, duration = s.duration, location = s.location,
    expected = cap(s.expected), actual = cap(s.actual), detail = cap(s.detail), last_rpc = cap(s.last_rpc),
    code = s.code, rpc_seq = s.rpc_seq, match = s.match, fields = s.fields,
    policies = s.policies and next(s.policies) and s.policies or nil,
  }
end

-- log() lines, each capped; nil when there are none.
local function capped_list(list)
  if not list then return nil end
  local out = json.array()
  for i, x in ipairs(list) do out[i] = cap(x) end
  return out
end

local function steps_of(list)
  local out = json.array()
  for _, s in ipairs(list or {}) do out[#out + 1] = step_record(s) end
  return out
end

--- A case's reported status (passed, failed or skipped) and, for a failure, its
-- kind: expectation (a check did not hold), error (runbook error), timeout, interrupted.
function M.case_status(internal)
  if internal == nil or internal == "skipped" then return "skipped" end
  if internal == "passed" then return "passed" end
  if internal == "failed" then return "failed", "expectation" end
  return "failed", internal
end

--- The report table of a run.
function M.build(run)
  local cases = json.array()
  for _, c in ipairs(run.selected_cases) do
    local status, kind = M.case_status(c.status)
    cases[#cases + 1] = {
      id = c.id, name = c.name, status = status, failure_kind = kind, duration = c.duration or 0,
      error = cap(c.error), location = c.location, notes = capped_list(c.notes), steps = steps_of(c.steps),
      code = c.code, skip_reason = c.skip_reason,
    }
  end
  local vars = {}
  for k, v in pairs(run.vars or {}) do vars[k] = run.var_decls[k] and run.var_decls[k].secret and "[secret]" or v end
  return {
    schema_version = M.SCHEMA_VERSION,
    kmsrun = run.version,
    runbook = run.runbook.path,
    description = run.runbook.header.description,
    target = run.target.name,
    target_summary = run.target.summary,
    status = run.status,
    exit_code = run.exit_code,
    started_at = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(run.started_wall)),
    duration = run.duration,
    vars = vars,
    setup = run.setup_case and { name = run.setup_case.name, status = run.setup_case.status, error = cap(run.setup_case.error),
      code = run.setup_case.code, notes = run.setup_case.notes and json.array(run.setup_case.notes) or nil,
      steps = steps_of(run.setup_case.steps) } or nil,
    cases = cases,
    summary = run.counts,
    cleanup = json.array(run.cleanup_log or {}),
    error = cap(run.error),
  }
end

-- Each value is scrubbed (and capped) before it is escaped (never the XML text: a secret that is
-- XML syntax must not cut an attribute).
local function xml_escape(s)
  s = cap(tostring(s or ""))
  s = s:gsub("[%z\1-\8\11\12\14-\31]", "") -- not allowed in XML 1.0
  if not utf8.len(s) then s = s:gsub("[\128-\255]", "?") end -- raw bytes from a broken response
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function failure_text(c)
  local lines = {}
  for _, s in ipairs(c.steps or {}) do
    if s.status ~= "passed" then
      lines[#lines + 1] = string.format("step: %s (%s)", s.name, s.location or "?")
      if s.expected ~= nil then lines[#lines + 1] = "expected: " .. tostring(s.expected) end
      if s.actual ~= nil then lines[#lines + 1] = "actual: " .. tostring(s.actual) end
      if s.detail then lines[#lines + 1] = tostring(s.detail) end
    end
  end
  if #lines == 0 and c.error then lines[1] = c.error end
  return table.concat(lines, "\n")
end

--- JUnit XML (the common Jenkins/Surefire dialect): one testsuite, one testcase per case.
function M.junit(run)
  local suite = run.runbook.header.name or run.runbook.path:match("([^/]+)%.lua$") or run.runbook.path
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  local c = run.counts
  local failures, errors = 0, 0
  for _, case in ipairs(run.selected_cases) do
    if case.status == "failed" then failures = failures + 1
    elseif case.status == "error" or case.status == "interrupted" or case.status == "timeout" then errors = errors + 1 end
  end
  out[#out + 1] = string.format('<testsuites name="kmsrun" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f">',
    #run.selected_cases, failures, errors, c.skipped, run.duration or 0)
  out[#out + 1] = string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f" timestamp="%s" hostname="localhost">',
    xml_escape(suite), #run.selected_cases, failures, errors, c.skipped, run.duration or 0,
    os.date("!%Y-%m-%dT%H:%M:%S", math.floor(run.started_wall)))
  out[#out + 1] = string.format('    <properties><property name="target" value="%s"/><property name="runbook" value="%s"/></properties>',
    xml_escape(run.target.name), xml_escape(run.runbook.path))
  for _, case in ipairs(run.selected_cases) do
    out[#out + 1] = string.format('    <testcase name="%s" classname="%s.%s" time="%.3f">', xml_escape(case.id .. ". " .. case.name),
      xml_escape(suite), xml_escape(run.target.name), case.duration or 0)
    local status = case.status or "skipped"
    if status == "failed" then
      out[#out + 1] = string.format('      <failure message="%s" type="StepFailure">%s</failure>',
        xml_escape(case.error or "failed"), xml_escape(failure_text(case)))
    elseif status == "error" or status == "interrupted" or status == "timeout" then
      out[#out + 1] = string.format('      <error message="%s" type="%s">%s</error>',
        xml_escape(case.error or status), ({ interrupted = "Interrupted", timeout = "Timeout" })[status] or "RunbookError",
        xml_escape(failure_text(case)))
    elseif status == "skipped" then
      out[#out + 1] = string.format('      <skipped message="%s"/>', xml_escape(case.skip_reason or "not run"))
    end
    out[#out + 1] = '    </testcase>'
  end
  out[#out + 1] = '  </testsuite>'
  out[#out + 1] = '</testsuites>'
  return table.concat(out, "\n") .. "\n"
end

return M
