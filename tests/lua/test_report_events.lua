-- report/events.lua: every event is one line holding one JSON object with seq,
-- time and event; a failed step_end/case_end without a code is a bug and
-- raises; values are scrubbed and capped before encoding.
local T = require "kmsrun.lib.testing"
local json = require "kmsrun.lib.json"
local events = require "kmsrun.report.events"
local redact = require "kmsrun.report.redact"
local text = require "kmsrun.report.text"

-- Collects the raw lines emitted by fn.
local function capture(fn)
  local raw = {}
  events.set_sink(function(line) raw[#raw + 1] = line return true end)
  local ok, err = pcall(fn)
  events.set_sink(nil)
  if not ok then error(err, 0) end
  return raw
end

local function decoded(raw)
  local out = {}
  for i, line in ipairs(raw) do out[i] = json.decode(line) end
  return out
end

T.test("without a sink emitting does nothing", function()
  events.set_sink(nil)
  events.emit("case_start", { case = "x" })
end)

T.test("each event is one line of one JSON object with seq, time and event", function()
  local raw = capture(function()
    events.emit("run_start", { runbook = "rb.lua" })
    events.emit("case_start", { case = "multi\nline name" })
    events.emit("case_end", { case = "c", status = "passed" })
  end)
  T.eq(#raw, 3)
  local before = os.time()
  for i, line in ipairs(raw) do
    T.eq(select(2, line:gsub("\n", "")), 1, "one newline, at the end")
    T.eq(line:sub(-1), "\n")
    local ev = json.decode(line)
    T.eq(type(ev), "table")
    T.eq(ev.seq, i)
    T.ok(type(ev.time) == "number" and math.abs(ev.time - before) < 60, "wall time " .. tostring(ev.time))
  end
  local evs = decoded(raw)
  T.eq({ evs[1].event, evs[2].event, evs[3].event }, { "run_start", "case_start", "case_end" })
  T.eq(evs[2].case, "multi\nline name")
end)

T.test("run_start carries the schema; a new sink restarts seq", function()
  local evs = decoded(capture(function() events.emit("run_start", {}) end))
  T.eq(evs[1].schema, events.SCHEMA)
  T.eq(evs[1].seq, 1)
end)

T.test("a failed step_end or case_end without a code raises", function()
  for _, kind in ipairs { "step_end", "case_end" } do
    for _, status in ipairs { "failed", "timeout", "interrupted", "error" } do
      local raw = {}
      events.set_sink(function(line) raw[#raw + 1] = line return true end)
      local err = T.raises(function() events.emit(kind, { status = status }) end, "carries no failure code")
      events.set_sink(nil)
      T.contains(err, kind .. " with status " .. status)
      T.eq(#raw, 0, "nothing written")
    end
  end
end)

T.test("passed and skipped need no code; a failed one with a code is fine", function()
  local evs = decoded(capture(function()
    events.emit("step_end", { status = "passed" })
    events.emit("case_end", { status = "skipped" })
    events.emit("case_end", { status = "failed", code = "EXPECTATION" })
    events.emit("rpc", { status = 500 }) -- other kinds are not checked
  end))
  T.eq(#evs, 4)
  T.eq(evs[3].code, "EXPECTATION")
end)

T.test("secrets are scrubbed from every value, nested ones too, and the line stays JSON", function()
  local secret = 'k3y"},{"x":"' .. ("9"):rep(12) -- JSON syntax inside
  redact.add(secret)
  local raw = capture(function()
    events.emit("step_end", { status = "failed", code = "EXPECTATION", actual = "got " .. secret,
      nested = { deeper = { secret } } })
  end)
  T.eq(raw[1]:find(secret, 1, true), nil, "no secret in the line")
  local ev = json.decode(raw[1])
  T.contains(ev.actual, "[REDACTED")
  T.contains(ev.nested.deeper[1], "[REDACTED")
  T.eq(ev.x, nil, "the secret did not add a field")
end)

T.test("long string values are capped", function()
  local ev = decoded(capture(function() events.emit("rpc", { response = ("r"):rep(text.FILE_MAX * 2) }) end))[1]
  T.ok(#ev.response < text.FILE_MAX * 2 and #ev.response <= text.FILE_MAX + 200, "capped: " .. #ev.response)
end)

T.test("a failing sink is reported once and kept in lost", function()
  local calls, said = 0, {}
  local stderr = io.stderr
  io.stderr = { write = function(_, ...) said[#said + 1] = table.concat({ ... }) end }
  events.set_sink(function() calls = calls + 1 return nil, "disk full" end)
  local ok, err = pcall(function() events.emit("rpc", {}) events.emit("rpc", {}) end)
  io.stderr = stderr
  T.ok(ok, err)
  local lost = events.lost
  events.set_sink(nil)
  T.eq(calls, 2)
  T.eq(#said, 1, "said once")
  T.contains(said[1], "cannot write the events stream: disk full")
  T.eq(lost, "disk full")
  T.eq(events.lost, nil, "a new sink starts clean")
end)

T.test("every code is documented and KINDS lists the kinds", function()
  for _, code in ipairs { "EXPECTATION", "TRANSPORT", "TIMEOUT", "INFRA", "USAGE", "RUNTIME", "CANCELLED" } do
    T.eq(type(events.CODES[code]), "string", code)
  end
  T.eq(events.KINDS[1], "run_start")
  T.eq(events.KINDS[#events.KINDS], "run_end")
end)
