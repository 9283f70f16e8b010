-- `kmsrun replay OUTDIR`: re-checks a recorded run's expectations offline, from
-- its transcript (every RPC with its redacted response) and its report (every
-- step with what it expected), and prints per-case pass/fail. Nothing is
-- contacted. `kmsrun replay OUTDIR --curl` prints each recorded RPC as a curl
-- command line instead. docs/report-format.md describes the inputs.
local record = require "kmsrun.cli.replay.record"
local judge = require "kmsrun.cli.replay.judge"
local curl = require "kmsrun.cli.replay.curl"
local argv = require "kmsrun.lib.argv"
local json = require "kmsrun.lib.json"

local USAGE = [[
usage: kmsrun replay OUTDIR [options]         re-check a recorded run's expectations offline
       kmsrun replay OUTDIR --curl [options]  print the recorded RPCs as curl commands

OUTDIR is a run's output directory or its evidence.tar.gz. Nothing is contacted.

options:
  --case SEL         only the cases whose number or name matches (repeatable)
  --json             print the result as one JSON object instead of text
  -q, --quiet        print only what failed and the summary
  --curl             print curl command lines instead of re-checking
  --seq N            with --curl: only transcript entry N (repeatable)
  --rewrite OLD=NEW  with --curl: replace the URL prefix OLD by NEW (repeatable)
  -h, --help         this help

exit codes: 0 every replayed case passed and the replay agrees with the recording;
1 a case failed on replay, or a verdict or a file differs from the recording;
2 usage error or unreadable recording
]]

local FLAGS = {
  ["--curl"] = { "curl" },
  ["--json"] = { "json" },
  ["--quiet"] = { "quiet" }, ["-q"] = "--quiet",
  ["--help"] = { "help" }, ["-h"] = "--help",
  ["--case"] = { "cases", value = "SEL", list = true },
  ["--seq"] = { "seq_list", value = "N", list = true,
    check = function(v) return math.tointeger(tonumber(v)), "a transcript entry number" end },
  ["--rewrite"] = { "rewrite", value = "OLD=NEW", list = true, check = function(v)
    local from, to = v:match("^(.-)=(.*)$")
    if not from or from == "" then return nil, "OLD=NEW" end
    return { from, to }
  end },
}

local function parse(args)
  local o, err = argv.parse(args, FLAGS, { positional = "dir", several = "only one OUTDIR" })
  if not o then return nil, err end
  o.seqs = {}
  for _, n in ipairs(o.seq_list) do o.seqs[n] = true end
  o.any_seq = #o.seq_list > 0 or nil
  return o
end

local function case_selected(o, b)
  if #o.cases == 0 then return true end
  if b.kind ~= "case" then return false end
  for _, sel in ipairs(o.cases) do
    if tostring(b.id) == sel or b.name == sel or b.name:lower():find(sel:lower(), 1, true) then return true end
  end
  return false
end

-- A recorded status in report.json's terms (older reports and the setup block
-- use the internal ones: error, timeout, interrupted).
local function normalized(status)
  if status == nil or status == "skipped" then return "skipped" end
  if status == "passed" then return "passed" end
  return "failed"
end

-- Re-checks one expectation step. Returns a check record:
-- {step, location, kind, verdict = "held"|"failed"|"kept"|"unverifiable", recorded, expected, actual, from, seq}.
local function check_step(rec, s, kind)
  local c = { step = s.name, location = s.location, kind = kind, recorded = s.status }
  if kind == "expect" then
    c.verdict, c.expected, c.actual, c.agrees = "kept", s.expected, s.actual, true
    c.from = "a Lua condition cannot be re-evaluated offline: kept as recorded"
    return c
  end
  local passed, want, got
  if kind == "expect_eq" then
    passed, want, got = judge.expect_eq(s)
    local hits = judge.find_value(rec.transcript, s.actual)
    c.from = #hits > 0 and ("actual found in " .. table.concat(hits, ", ", 1, math.min(3, #hits))
      .. (#hits > 3 and string.format(" (+%d)", #hits - 3) or "")) or "operands as recorded"
  elseif s.judged then
    passed, want, got = judge[kind](s, s.judged)
    c.seq = s.judged.seq
    c.from = string.format("from #%d %s %s", s.judged.seq, s.judged.kms or "?", s.judged.method or "?")
  else
    passed, want, got = nil, s.expected, "no recorded RPC of this method before the step"
    c.from = "not linked to the transcript"
  end
  c.expected, c.actual = want, got
  if passed == nil then c.verdict = "unverifiable"
  else c.verdict = passed and "held" or "failed" end
  c.agrees = passed == nil or (passed and s.status == "passed") or (not passed and s.status == "failed")
  return c
end

-- Replays one block: {kind, id, name, recorded, replayed, failure_kind, error, checks, failures}.
local function replay_block(rec, b)
  local r = { kind = b.kind, id = b.id, name = b.name, recorded = normalized(b.status), error = b.error,
    checks = {}, failures = {} }
  local failed_check, recorded_failure, step_failed
  for _, s in ipairs(b.steps) do
    if s.status ~= "passed" then step_failed = true end
    local kind = record.expectation_kind(s)
    if kind then
      local c = check_step(rec, s, kind)
      r.checks[#r.checks + 1] = c
      if c.verdict == "failed" then failed_check = failed_check or c end
      if (c.verdict == "kept" or c.verdict == "unverifiable") and s.status ~= "passed" then recorded_failure = recorded_failure or s end
    elseif s.status ~= "passed" then
      -- Not an expectation (a transport failure, a deadline, an error): kept as recorded.
      recorded_failure = recorded_failure or s
      local f = { step = s.name, location = s.location, recorded = s.status, expected = s.expected, actual = s.actual }
      if s.entries and #s.entries > 0 then
        local last = s.entries[#s.entries]
        f.last_rpc = string.format("#%d %s %s -> %s", last.seq, last.kms or "?", last.method or "?", judge.show(last):sub(1, 200))
      end
      r.failures[#r.failures + 1] = f
    end
  end
  if r.recorded == "skipped" then
    r.replayed = "skipped"
  elseif failed_check then
    r.replayed, r.failure_kind = "failed", "expectation"
  elseif recorded_failure then
    r.replayed, r.failure_kind = "failed", recorded_failure.status == "failed" and "expectation" or recorded_failure.status
  elseif r.recorded ~= "passed" and not step_failed then
    -- failed outside any step: a usage error, a traceback, a deadline
    r.replayed = "failed"
    r.failure_kind = b.failure_kind or (b.status ~= "failed" and b.status or "expectation")
  else
    r.replayed = "passed"
  end
  r.agrees = r.replayed == r.recorded
  return r
end

local function replay(o)
  local rec, err = record.open(o.dir)
  if not rec then io.stderr:write("kmsrun replay: ", err, "\n") return 2 end
  rec:link()
  local result = {
    recording = rec.path, runbook = rec.report.runbook, target = rec.report.target, started_at = rec.report.started_at,
    recorded_status = rec.report.status, recorded_exit_code = rec.report.exit_code,
    manifest = rec:verify_manifest(), warnings = rec.warnings, rpcs = #rec.transcript, blocks = {},
    summary = { passed = 0, failed = 0, skipped = 0 },
    expectations = { held = 0, failed = 0, kept = 0, unverifiable = 0 },
    differences = {},
  }
  local any_case = false
  for _, b in ipairs(rec:blocks()) do
    if case_selected(o, b) then
      any_case = any_case or b.kind == "case"
      local r = replay_block(rec, b)
      result.blocks[#result.blocks + 1] = r
      local title = b.kind == "case" and string.format("case %s: %s", tostring(b.id), b.name) or (b.kind .. ": " .. b.name)
      r.title = title
      if b.kind == "case" then
        result.summary[r.replayed] = result.summary[r.replayed] + 1
      end
      if not r.agrees then result.differences[#result.differences + 1] = title .. " (recorded " .. r.recorded .. ")" end
      for _, c in ipairs(r.checks) do
        result.expectations[c.verdict] = result.expectations[c.verdict] + 1
        if not c.agrees then
          result.differences[#result.differences + 1] = string.format("%s: step %s (recorded %s)", title, c.step, tostring(c.recorded))
        end
      end
    end
  end
  if #o.cases > 0 and not any_case then
    io.stderr:write("kmsrun replay: no case matches --case ", table.concat(o.cases, ", "), "\n")
    return 2
  end
  local m = result.manifest
  local tampered = m and (#m.changed + #m.missing > 0)
  local setup_failed = false
  for _, r in ipairs(result.blocks) do
    if r.kind ~= "case" and r.replayed == "failed" then setup_failed = true end
  end
  local code = (result.summary.failed > 0 or setup_failed or #result.differences > 0 or tampered) and 1 or 0
  result.exit_code = code

  if o.json then
    local function arr(t) return json.array(t) end
    for _, r in ipairs(result.blocks) do r.checks, r.failures = arr(r.checks), arr(r.failures) end
    result.blocks, result.differences, result.warnings = arr(result.blocks), arr(result.differences), arr(result.warnings)
    if m then m.changed, m.missing = arr(m.changed), arr(m.missing) end
    io.stdout:write(json.encode(result, { pretty = true }), "\n")
    return code
  end

  local function out(...) io.stdout:write(...) end
  local function indent(s, prefix) return (tostring(s):gsub("\n", "\n" .. prefix)) end
  out(string.format("replay of %s: %s on target %s, started %s, recorded %s (exit %s)\n", rec.path,
    tostring(result.runbook), tostring(result.target), tostring(result.started_at), tostring(result.recorded_status),
    tostring(result.recorded_exit_code)))
  if not m then
    out("manifest: none (no MANIFEST.sha256): the files cannot be checked\n")
  elseif tampered then
    out(string.format("manifest: %d files checked; CHANGED since the run: %s%s\n", m.checked,
      #m.changed > 0 and table.concat(m.changed, ", ") or "none",
      #m.missing > 0 and ("; MISSING: " .. table.concat(m.missing, ", ")) or ""))
  else
    out(string.format("manifest: %d files match MANIFEST.sha256\n", m.checked))
  end
  for _, w in ipairs(rec.warnings) do out("warning: ", w, "\n") end
  out(string.format("transcript: %d recorded RPCs; re-checking offline, nothing is contacted\n", result.rpcs))
  local MARK = { held = "ok  ", failed = "FAIL", kept = "kept", unverifiable = "??? " }
  for _, r in ipairs(result.blocks) do
    local interesting = r.replayed == "failed" or not r.agrees
    for _, c in ipairs(r.checks) do if not c.agrees then interesting = true end end
    if not o.quiet or interesting then
      out("\n", r.title, "\n")
      for _, c in ipairs(r.checks) do
        if not o.quiet or c.verdict == "failed" or not c.agrees or c.recorded ~= "passed" then
          out(string.format("  [%s] %s (%s)%s\n", MARK[c.verdict], c.step, c.from,
            c.agrees and "" or ("  DIFFERS: recorded " .. tostring(c.recorded))))
          if c.verdict == "failed" or (c.verdict ~= "held" and c.recorded ~= "passed") then
            if c.location then out("         at ", c.location, "\n") end
            out("         expected: ", indent(c.expected, "                   "), "\n")
            out("         actual:   ", indent(c.actual, "                   "), "\n")
          end
        end
      end
      for _, f in ipairs(r.failures) do
        out(string.format("  [%s] %s: recorded %s, not an expectation: kept as recorded\n",
          f.recorded == "failed" and "FAIL" or "ERR ", f.step, f.recorded))
        if f.location then out("         at ", f.location, "\n") end
        if f.expected then out("         expected: ", indent(f.expected, "                   "), "\n") end
        if f.actual then out("         actual:   ", indent(f.actual, "                   "), "\n") end
        if f.last_rpc then out("         last rpc: ", f.last_rpc, "\n") end
      end
      local verdict = string.upper(r.replayed) .. (r.failure_kind and r.failure_kind ~= "expectation" and (" (" .. r.failure_kind .. ")") or "")
      if r.replayed == "skipped" then verdict = "SKIPPED (not run in the recording)" end
      if r.replayed == "failed" and r.error then verdict = verdict .. ": " .. indent(r.error, "    ") end
      if not r.agrees then verdict = verdict .. "  DIFFERS: recorded " .. r.recorded end
      out("  ", verdict, "\n")
    end
  end
  local e = result.expectations
  out(string.format("\nreplayed: %d passed, %d failed, %d skipped; %d expectations re-checked (%d held, %d did not)%s%s\n",
    result.summary.passed, result.summary.failed, result.summary.skipped, e.held + e.failed, e.held, e.failed,
    e.kept > 0 and string.format(", %d kept as recorded", e.kept) or "",
    e.unverifiable > 0 and string.format(", %d not re-checkable", e.unverifiable) or ""))
  if #result.differences == 0 then
    out("the replay agrees with the recorded verdicts\n")
  else
    out(string.format("the replay DIFFERS from the recording: %s\n", table.concat(result.differences, "; ")))
  end
  return code
end

local function curl_mode(o)
  local rec, err = record.open(o.dir)
  if not rec then io.stderr:write("kmsrun replay: ", err, "\n") return 2 end
  local names = {}
  for _, b in ipairs(rec:blocks()) do
    if b.kind == "case" and case_selected(o, b) then names[b.name] = true end
  end
  local list = {}
  for _, e in ipairs(rec.transcript) do
    if (not o.any_seq or o.seqs[e.seq]) and (#o.cases == 0 or names[e.case]) then list[#list + 1] = e end
  end
  if #list == 0 then
    io.stderr:write("kmsrun replay: no recorded RPC matches\n")
    return 2
  end
  io.stdout:write(curl.script(rec, list, { rewrite = o.rewrite }))
  return 0
end

return function(args)
  local o, perr = parse(args)
  if not o then
    io.stderr:write("kmsrun replay: ", perr, "\n", USAGE)
    return 2
  end
  if o.help then io.stdout:write(USAGE) return 0 end
  if not o.dir then io.stderr:write(USAGE) return 2 end
  if o.curl then return curl_mode(o) end
  if o.any_seq or #o.rewrite > 0 then
    io.stderr:write("kmsrun replay: --seq and --rewrite go with --curl\n")
    return 2
  end
  return replay(o)
end
