-- report/results.lua: report.json's fields and junit.xml for passed, failed,
-- erroring and skipped cases, built from a small fake run.
local T = require "kmsrun.lib.testing"
local json = require "kmsrun.lib.json"
local results = require "kmsrun.report.results"
local redact = require "kmsrun.report.redact"

local function fake_run(fields)
  local run = {
    version = "9.9.9", status = "failed", exit_code = 1, started_wall = 1700000000.5, duration = 12.25,
    runbook = { path = "runbooks/demo.lua", header = { name = "demo", description = "a demo" } },
    target = { name = "sim", summary = "emulated" },
    vars = { user = "alice", token = "tok-value" },
    var_decls = { user = {}, token = { secret = true } },
    counts = { passed = 1, failed = 2, skipped = 1 },
    cleanup_log = { { description = "stop auth", status = "done" } },
    selected_cases = {
      { id = 1, name = "passes", status = "passed", duration = 0.5, location = "demo.lua:10",
        steps = { { name = "deploy", status = "passed", duration = 0.4, location = "demo.lua:11",
          policies = { auth = { version = 1, sha256 = "ab", policy = "deny_all()" } } } } },
      { id = 2, name = "fails <&>", status = "failed", duration = 1, code = "EXPECTATION",
        error = "step 'expect_ok' failed at demo.lua:21", notes = { "a note" },
        steps = { { name = "deploy kms1", status = "passed", location = "demo.lua:20" },
          { name = "expect_ok", status = "failed", code = "EXPECTATION", location = "demo.lua:21",
          expected = 'HTTP "200"', actual = "HTTP 503 <busy>", detail = "log tail", last_rpc = "kms1 M {} -> HTTP 503" } } },
      { id = 3, name = "times out", status = "timeout", duration = 2, code = "TIMEOUT", error = "case timed out",
        steps = {} },
      { id = 4, name = "not run", status = nil, skip_reason = "an earlier case's 'needs' failed" },
    },
  }
  for k, v in pairs(fields or {}) do run[k] = v end
  return run
end

T.test("case_status maps internal statuses to passed/failed/skipped and a failure kind", function()
  T.eq({ results.case_status("passed") }, { "passed" })
  T.eq({ results.case_status(nil) }, { "skipped" })
  T.eq({ results.case_status("skipped") }, { "skipped" })
  T.eq({ results.case_status("failed") }, { "failed", "expectation" })
  for _, s in ipairs { "error", "timeout", "interrupted" } do T.eq({ results.case_status(s) }, { "failed", s }) end
end)

T.test("report.json holds the run's fields", function()
  local r = results.build(fake_run())
  T.eq(r.schema_version, results.SCHEMA_VERSION)
  T.eq({ r.kmsrun, r.runbook, r.description, r.target, r.target_summary, r.status, r.exit_code, r.duration },
    { "9.9.9", "runbooks/demo.lua", "a demo", "sim", "emulated", "failed", 1, 12.25 })
  T.eq(r.started_at, "2023-11-14T22:13:20Z")
  T.eq(r.summary, { passed = 1, failed = 2, skipped = 1 })
  T.eq(r.cleanup, { { description = "stop auth", status = "done" } })
  T.eq(r.vars, { user = "alice", token = "[secret]" }, "a secret var's value is never written")
  T.eq(r.setup, nil)
end)

T.test("report.json cases: status, failure kind, code, steps", function()
  local r = results.build(fake_run())
  local c = r.cases
  T.eq(#c, 4)
  T.eq({ c[1].status, c[1].failure_kind, c[1].location }, { "passed", nil, "demo.lua:10" })
  T.eq(c[1].steps[1].policies.auth.version, 1)
  T.eq({ c[2].status, c[2].failure_kind, c[2].code, c[2].error }, { "failed", "expectation", "EXPECTATION",
    "step 'expect_ok' failed at demo.lua:21" })
  T.eq(c[2].notes, { "a note" })
  T.eq(c[2].steps[2], { name = "expect_ok", status = "failed", code = "EXPECTATION", location = "demo.lua:21",
    expected = 'HTTP "200"', actual = "HTTP 503 <busy>", detail = "log tail", last_rpc = "kms1 M {} -> HTTP 503" })
  T.eq({ c[3].status, c[3].failure_kind, c[3].code }, { "failed", "timeout", "TIMEOUT" })
  T.eq({ c[4].status, c[4].skip_reason, c[4].duration }, { "skipped", "an earlier case's 'needs' failed", 0 })
end)

T.test("empty lists encode as JSON arrays", function()
  local r = results.build(fake_run { cleanup_log = {} })
  local text = json.encode(r)
  T.contains(text, '"cleanup":[]')
  T.contains(json.encode(r.cases[3]), '"steps":[]')
end)

T.test("report.json carries the setup block when there is one", function()
  local r = results.build(fake_run { setup_case = { name = "setup", status = "error", code = "INFRA", error = "no auth",
    steps = { { name = "start", status = "error", code = "INFRA" } } } })
  T.eq({ r.setup.name, r.setup.status, r.setup.code, r.setup.error }, { "setup", "error", "INFRA", "no auth" })
  T.eq(r.setup.steps[1].name, "start")
end)

T.test("texts in the report are scrubbed", function()
  local secret = "report-secret-0123456789"
  redact.add(secret)
  local run = fake_run()
  run.selected_cases[2].steps[2].actual = "saw " .. secret
  run.error = "run error " .. secret
  local text = json.encode(results.build(run))
  T.eq(text:find(secret, 1, true), nil)
end)

local function junit(run)
  local x = results.junit(run or fake_run())
  return x, x:match('<testcase name="1%. passes".-</testcase>'), x:match('<testcase name="2%..-</testcase>'),
    x:match('<testcase name="3%..-</testcase>'), x:match('<testcase name="4%..-</testcase>')
end

T.test("junit.xml: one suite, counts of failures, errors and skips", function()
  local x = junit()
  T.match(x, '^<%?xml version="1%.0" encoding="UTF%-8"%?>\n<testsuites name="kmsrun" tests="4" failures="1" errors="1" skipped="1" time="12%.250">\n')
  T.contains(x, '<testsuite name="demo" tests="4" failures="1" errors="1" skipped="1" time="12.250" timestamp="2023-11-14T22:13:20" hostname="localhost">')
  T.contains(x, '<property name="target" value="sim"/><property name="runbook" value="runbooks/demo.lua"/>')
  T.match(x, "</testsuite>\n</testsuites>\n$")
  local _, open = x:gsub("<testcase ", "")
  local _, close = x:gsub("</testcase>", "")
  T.eq({ open, close }, { 4, 4 })
end)

T.test("junit.xml: a passed case has no child, a failed one a failure with its step", function()
  local _, passed, failed = junit()
  T.eq(passed, '<testcase name="1. passes" classname="demo.sim" time="0.500">\n    </testcase>')
  T.contains(failed, '<failure message="step &apos;expect_ok&apos; failed at demo.lua:21" type="StepFailure">')
  T.eq(failed:find("deploy kms1", 1, true), nil, "a passed step is not in the failure text")
  T.contains(failed, ">step: expect_ok (demo.lua:21)\nexpected: HTTP &quot;200&quot;\nactual: HTTP 503 &lt;busy&gt;\nlog tail</failure>")
end)

T.test("junit.xml: a timeout is an error of type Timeout, an unrun case skipped with its reason", function()
  local _, _, _, timeout, skipped = junit()
  T.contains(timeout, '<error message="case timed out" type="Timeout">case timed out</error>')
  T.contains(skipped, '<skipped message="an earlier case&apos;s &apos;needs&apos; failed"/>')
end)

T.test("junit.xml escapes markup in names and drops characters XML cannot hold", function()
  local run = fake_run()
  run.selected_cases[2].error = "bad \1\27 bytes & <tags>"
  local x, _, failed = junit(run)
  T.contains(failed, '<testcase name="2. fails &lt;&amp;&gt;"')
  T.contains(failed, 'message="bad  bytes &amp; &lt;tags&gt;"')
  T.eq(x:find("[\1-\8\11\12\14-\31]"), nil, "no control character")
  run.selected_cases[2].error = "raw \255\254 bytes"
  T.contains(results.junit(run), 'message="raw ?? bytes"', "invalid UTF-8 replaced")
end)

T.test("junit.xml: an interrupted or erroring case counts as an error", function()
  local run = fake_run()
  run.selected_cases[2].status = "interrupted"
  run.selected_cases[2].error = "interrupted by SIGINT"
  local x, _, c2 = junit(run)
  T.contains(x, 'failures="0" errors="2"')
  T.contains(c2, 'type="Interrupted"')
  run.selected_cases[2].status = "error"
  T.contains(results.junit(run), 'type="RunbookError"')
end)

T.test("junit.xml is scrubbed", function()
  local secret = "junit-secret-0123456789"
  redact.add(secret)
  local run = fake_run()
  run.selected_cases[2].steps[2].detail = "detail " .. secret
  run.selected_cases[2].error = "error " .. secret
  T.eq(results.junit(run):find(secret, 1, true), nil)
end)
