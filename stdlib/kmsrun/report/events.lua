-- The event stream (`--events FILE`): one JSON object per line for the run's
-- start and end, every case and step start/end, RPC, readiness probe, deploy,
-- policy change and cleanup action. The contract is docs/events.md and
-- docs/schemas/events.schema.json; tests/e2e/test_events.sh validates every line.
--
-- Every step_end and case_end whose status is not "passed" (or "skipped")
-- carries `code`, one of the stable failure codes in M.CODES. A producer may pass
-- it (steps.lua / runner.lua know the error object); otherwise it is derived here
-- from the status and the recorded expectation, which is exact for statuses
-- interrupted, timeout and error, and a best effort among EXPECTATION,
-- TRANSPORT, TIMEOUT and INFRA for "failed".
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local text = require "kmsrun.report.text"
local time = require "kmsrun.time"

local M = {}

--- Identifies the stream's format; carried by run_start as `schema`.
M.SCHEMA = "kmsrun-events/1"

--- The event kinds, in the order a run emits them.
M.KINDS = { "run_start", "deploy", "retry", "ready", "case_start", "step_start", "rpc", "policy", "step_end",
  "case_end", "cleanup", "run_end" }

--- Stable failure codes (never renamed; new ones may be added).
M.CODES = {
  EXPECTATION = "an expectation did not hold: an expect_* step, or an action's own check (finish not answering OK, attestation fields missing)",
  TRANSPORT = "no HTTP answer: connection refused or reset, TLS or DNS failure",
  TIMEOUT = "a deadline passed: wait_ready gave up, an RPC timed out, a step, case or --timeout deadline expired",
  INFRA = "the environment could not be set up: a deploy failed, an auth server could not start or take a policy",
  USAGE = "misuse of the DSL in the runbook: wrong argument, unknown option, handle not deployed",
  RUNTIME = "an uncaught Lua error in runbook code",
  CANCELLED = "cancelled: Ctrl-C / SIGTERM, or a parallel sibling failed",
}

local sink -- function(line)
local seq = 0
local case_codes = {} -- case name -> code of its last non-passed step

--- Sets where event lines go: fn(line) -> true | nil, err (a failure is reported
-- once, and kept in M.lost).
function M.set_sink(fn) sink = fn; seq = 0; case_codes = {}; M.lost = nil end

--- The failure code of a step or case record (status, expected, actual, error).
-- Returns nil for passed and skipped.
function M.classify(rec)
  local status = rec.status
  if status == "passed" or status == "skipped" or status == nil then return nil end
  if status == "interrupted" then return "CANCELLED" end
  if status == "timeout" then return "TIMEOUT" end
  if status == "error" then
    -- An uncaught Lua error carries a traceback in the case record; a usage error
    -- is a located one-line message. A step only has tostring(error): RUNTIME.
    local text = tostring(rec.error or "")
    if rec.error and not text:find("stack traceback:", 1, true) then return "USAGE" end
    return "RUNTIME"
  end
  -- "failed": the runner's own failure wordings (runner.lua, dsl/actions.lua).
  local expected, actual = tostring(rec.expected or ""), tostring(rec.actual or "")
  if expected:match("^an HTTP response from ")
    or (expected:match("^HTTP 200 OK from GET /finish") and not actual:match("^HTTP ")) then
    if actual:match("ETIMEDOUT") or actual:lower():match("timed? ?out") then return "TIMEOUT" end
    return "TRANSPORT"
  end
  if expected:match(" within [%d.]+ s$") or expected:match("^runtime endpoint of .* announced$")
    or expected:match("^time left for ") then
    return "TIMEOUT"
  end
  if expected:match(" deployed on ") or expected:match("^policy of ") or expected:match("^auth server .* serving policy ")
    or expected:match("^a policy source for ") or expected:match("^policy written to ")
    or expected:match("^policy file holds ") then
    return "INFRA"
  end
  return "EXPECTATION"
end

function M.emit(kind, data)
  if not sink then return end
  seq = seq + 1
  local ev = { seq = seq, time = time.wall(), event = kind }
  for k, v in pairs(data or {}) do ev[k] = v end
  if kind == "run_start" and ev.schema == nil then ev.schema = M.SCHEMA end
  if kind == "step_end" or kind == "case_end" then
    if ev.code == nil then
      if kind == "case_end" and ev.status == "failed" then
        ev.code = case_codes[ev.case] or "EXPECTATION"
      else
        ev.code = M.classify(ev)
      end
    end
    if kind == "step_end" and ev.code then case_codes[ev.case] = ev.code end
    if kind == "case_end" then case_codes[ev.case] = nil end
  end
  -- Values scrubbed before encoding: a secret that is JSON syntax cannot cut the line.
  ev = redact.value(ev)
  for k, v in pairs(ev) do if type(v) == "string" then ev[k] = text.cap(v) end end
  local ok, err = sink(json.encode(ev) .. "\n")
  if ok == nil and err ~= nil and not M.lost then
    -- Said once; the runner fails the run (a consumer of the stream saw a part of it).
    M.lost = tostring(err)
    io.stderr:write("kmsrun: cannot write the events stream: ", M.lost, "; the events from here on are lost\n")
  end
end

return M
