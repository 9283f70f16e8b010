-- dsl/steps.lua: what one recorded step holds (name, location, expected/actual,
-- status, code), driven directly with a fake run instead of a whole runbook.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local steps = require "kmsrun.dsl.steps"
local api = require "kmsrun.dsl.api"
local events = require "kmsrun.report.events"
local redact = require "kmsrun.report.redact"
local json = require "kmsrun.lib.json"

-- This file plays the runbook: steps are located at its lines.
local SOURCE = debug.getinfo(1, "S")
api.runbook_sources[SOURCE.source] = true
local function line_here() return SOURCE.short_src .. ":" .. debug.getinfo(2, "l").currentline end

-- The part of the runner's Run a step reads.
local function fake_run(fields)
  local run = {
    runbook = { kmss = {} },
    console = { step_start = function() end, step_end = function() end },
    policy_state = function() return { auth = { version = 2, sha256 = "ab", policy = "deny_all()" } } end,
    log_tail = function(_, h) return "tail of " .. h.name .. "'s log" end,
    expiring = function(self) return self.expiring_wait end, -- run/deadlines.lua's accessor
  }
  for k, v in pairs(fields or {}) do run[k] = v end
  return run
end

-- Runs fn with a case context; returns the case, the events emitted, and pcall's results.
local function in_case(run, fn)
  local case = { name = "c1", steps = {} }
  local evs = {}
  events.set_sink(function(line) evs[#evs + 1] = json.decode(line) return true end)
  steps.set_context { run = run, case = case, depth = 0, kind = "case" }
  local ok, err = pcall(fn, case)
  steps.set_context(nil)
  events.set_sink(nil)
  return case, evs, ok, err
end

T.test("a passing step records name, location, status, duration and the policies in force", function()
  local where
  local case, evs, ok = in_case(fake_run(), function()
    where = line_here(); steps.run("deploy kms1", function(step) step.expected = "up" return 42 end)
  end) -- (not a tail call: that would drop this frame, and its line)
  T.ok(ok)
  T.eq(#case.steps, 1)
  local s = case.steps[1]
  T.eq(s.name, "deploy kms1")
  T.eq(s.location, where)
  T.eq(s.status, "passed")
  T.eq(s.code, nil)
  T.eq(s.expected, "up")
  T.ok(type(s.duration) == "number" and s.duration >= 0, "a duration")
  T.eq(s.started, nil, "no internal start time left")
  T.eq(s.policies.auth.version, 2)
  T.eq({ evs[1].event, evs[2].event }, { "step_start", "step_end" })
  T.eq(evs[2].status, "passed")
  T.eq(evs[2].location, where)
end)

T.test("the step returns fn's results", function()
  local _, _, ok = in_case(fake_run(), function()
    local a, b, c = steps.run("s", function(_, x) return x, nil, 3 end, "arg")
    T.eq({ a, b, c }, { "arg", nil, 3 })
  end)
  T.ok(ok)
end)

T.test("a failed expectation records expected, actual, detail and code, and re-raises", function()
  local case, evs, ok, err = in_case(fake_run(), function()
    steps.run("expect_ok", function() steps.fail("HTTP 200", "HTTP 503", "body: busy", "TRANSPORT") end)
  end)
  T.eq(ok, false)
  T.ok(steps.is_failure(err), "the failure propagates")
  T.eq(err.step, "expect_ok")
  local s = case.steps[1]
  T.eq({ s.status, s.code, s.expected, s.actual, s.detail }, { "failed", "TRANSPORT", "HTTP 200", "HTTP 503", "body: busy" })
  T.eq({ evs[2].status, evs[2].code }, { "failed", "TRANSPORT" })
end)

T.test("a runtime error records status error, RUNTIME and the message", function()
  local case = in_case(fake_run(), function() steps.run("s", function() error("boom", 0) end) end)
  T.eq({ case.steps[1].status, case.steps[1].code, case.steps[1].actual }, { "error", "RUNTIME", "boom" })
end)

T.test("a usage error records USAGE", function()
  local case = in_case(fake_run(), function() steps.run("s", function() api.usage_error("bad option") end) end)
  T.eq({ case.steps[1].status, case.steps[1].code }, { "error", "USAGE" })
end)

T.test("nested steps are one step (the outer one)", function()
  local case = in_case(fake_run(), function()
    steps.run("outer", function()
      steps.run("inner 1", function() end)
      steps.run("inner 2", function() end)
    end)
    steps.run("second", function() end)
  end)
  T.eq(#case.steps, 2)
  T.eq({ case.steps[1].name, case.steps[2].name }, { "outer", "second" })
end)

T.test("a failure in a nested step is the outer step's failure", function()
  local case, _, _, err = in_case(fake_run(), function()
    steps.run("outer", function() steps.run("inner", function() steps.fail("x", "y") end) end)
  end)
  T.eq(#case.steps, 1)
  T.eq(err.step, "outer")
  T.eq({ case.steps[1].status, case.steps[1].actual }, { "failed", "y" })
end)

T.test("outside a case a step is not recorded", function()
  steps.set_context(nil)
  T.eq(steps.run("s", function() return "r" end), "r")
end)

T.test("a failed step names the last RPC and the answering instance's log tail", function()
  local run = fake_run { runbook = { kmss = { { name = "kms1" }, { name = "kms2" } } } }
  local case = in_case(run, function(c)
    steps.run("get keys", function()
      c.last_rpc = { kms = "kms2", method = "GetAppKey", request = { app_id = "01" }, status = 500,
        response = { error = "no" } }
      steps.fail("OK", "HTTP 500")
    end)
  end)
  local s = case.steps[1]
  T.eq(s.last_rpc, 'kms2 GetAppKey {"app_id":"01"} -> HTTP 500 {"error":"no"}')
  T.eq(s.detail, "tail of kms2's log")
end)

T.test("a transport failure's last RPC says failed: and the error; a long body is cut", function()
  local case = in_case(fake_run { runbook = { kmss = { { name = "kms1" } } } }, function(c)
    steps.run("a", function()
      c.last_rpc = { kms = "kms1", method = "GetMeta", error = "connection refused" }
      steps.fail("OK", "no answer", "own detail")
    end)
  end)
  T.eq(case.steps[1].last_rpc, "kms1 GetMeta {} -> failed: connection refused ")
  T.eq(case.steps[1].detail, "own detail", "a step's own detail is kept")
  case = in_case(fake_run(), function(c)
    steps.run("b", function()
      c.last_rpc = { kms = "kms1", method = "M", status = 200, response = ("x"):rep(1000) }
      steps.fail("a", "b")
    end)
  end)
  T.contains(case.steps[1].last_rpc, ("x"):rep(300) .. "…")
  T.eq(case.steps[1].last_rpc:find(("x"):rep(301), 1, true), nil)
end)

T.test("a passing step carries no last_rpc", function()
  local case = in_case(fake_run(), function(c)
    steps.run("a", function() c.last_rpc = { kms = "kms1", method = "M", status = 200, response = "ok" } end)
  end)
  T.eq(case.steps[1].last_rpc, nil)
end)

T.test("secrets in what a step saw are scrubbed in the record and the event", function()
  local secret = "s3cr3t-app-key-0123456789"
  redact.add(secret)
  local case, evs = in_case(fake_run(), function(c)
    steps.run("leak", function()
      c.last_rpc = { kms = "kms1", method = "M", status = 200, response = { key = secret } }
      steps.fail("no " .. secret, "got " .. secret, "detail " .. secret)
    end)
  end)
  local s = case.steps[1]
  for _, field in ipairs { "expected", "actual", "detail", "last_rpc" } do
    T.eq(s[field]:find(secret, 1, true), nil, field .. " scrubbed")
    T.contains(s[field], "[REDACTED", field)
  end
  T.eq(json.encode(evs):find(secret, 1, true), nil, "no secret in the events")
end)

T.test("a step cancelled by a deadline's watchdog reports a timeout naming what it waited for", function()
  local run = fake_run()
  local case = in_case(run, function()
    local t = task.spawn(function() steps.run("wait", function() time.sleep(10) end) end)
    time.sleep(0.01)
    run.expiring_wait = "time.sleep(10)" -- what run:expiring() says while a watchdog cancels
    t:cancel()
    pcall(t.join, t)
  end)
  T.eq({ case.steps[1].status, case.steps[1].code }, { "timeout", "TIMEOUT" })
  T.contains(case.steps[1].actual, "waiting for: time.sleep(10)")
end)

T.test("a step cancelled otherwise is interrupted", function()
  local case = in_case(fake_run(), function()
    local t = task.spawn(function() steps.run("wait", function() time.sleep(10) end) end)
    time.sleep(0.01)
    t:cancel()
    pcall(t.join, t)
  end)
  T.eq({ case.steps[1].status, case.steps[1].code }, { "interrupted", "CANCELLED" })
end)

T.test("an instance that died during a failed step is named in its detail, once", function()
  local kms1 = { name = "kms1", deployed = true }
  local run = fake_run { runbook = { kmss = { kms1, { name = "kms2" } } },
    target = { exited = function(_, h) return h == kms1 and "exit status 134" or nil end } }
  local case = in_case(run, function()
    pcall(steps.run, "a", function() steps.fail("OK", "connection reset", "own detail") end)
    pcall(steps.run, "b", function() steps.fail("OK", "connection refused") end)
  end)
  T.eq(case.steps[1].detail, "kms1 is not running any more: exit status 134; it crashed during this step\nown detail")
  T.eq(case.steps[2].detail, nil, "a crash is reported at the step it happened in")
  T.eq(kms1.crash_reported, true)
end)
