-- The event stream (`--events FILE`): one JSON object per line for the run's
-- start and end, every case and step start/end, RPC, readiness probe, deploy,
-- policy change and cleanup action. The contract is docs/events.md and
-- docs/schemas/events.schema.json; tests/e2e/test_events.sh validates every line.
--
-- Every step_end and case_end whose status is not "passed" (or "skipped")
-- carries `code`, one of the stable failure codes in M.CODES, given by the
-- producer from the error object (dsl/outcome.lua).
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

--- Sets where event lines go: fn(line) -> true | nil, err (a failure is reported
-- once, and kept in M.lost).
function M.set_sink(fn) sink = fn; seq = 0; M.lost = nil end

function M.emit(kind, data)
  if not sink then return end
  seq = seq + 1
  local ev = { seq = seq, time = time.wall(), event = kind }
  for k, v in pairs(data or {}) do ev[k] = v end
  if kind == "run_start" and ev.schema == nil then ev.schema = M.SCHEMA end
  if (kind == "step_end" or kind == "case_end") and ev.code == nil and ev.status ~= "passed"
    and ev.status ~= "skipped" then
    -- dsl/outcome.lua gives every failed step and block its code; none is a bug.
    error("events: " .. kind .. " with status " .. tostring(ev.status) .. " carries no failure code", 2)
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
