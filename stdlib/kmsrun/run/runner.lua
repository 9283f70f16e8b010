-- Runs a loaded runbook: auth servers, setup, cases, teardown, the cleanup
-- ledger, the report, the evidence archive and the exit code — on success,
-- failure, runbook error and Ctrl-C alike.
local core = require "kmsrun.core"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local prpc = require "kmsrun.kms.prpc"
local redact = require "kmsrun.report.redact"
local events = require "kmsrun.report.events"
local evidence = require "kmsrun.report.evidence"
local report = require "kmsrun.report.results"
local steps = require "kmsrun.dsl.steps"
local console = require "kmsrun.report.console"
local exit_codes = require "kmsrun.run.exit_codes"

local Run = {}
Run.__index = Run

local M = {}

function M.new(spec, opts)
  local r = setmetatable({
    runbook = spec, opts = opts, version = opts.version, target = opts.target,
    vars = opts.vars, var_decls = opts.var_decls,
    ledger = {}, cleanup_log = {}, policy_versions = {}, transcript_seq = 0,
    started = time.now(), started_wall = time.wall(), deadlines = {},
  }, Run)
  if opts.timeout then r.run_deadline = r.started + opts.timeout end
  r.console = console.new(opts)
  return r
end

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

-- Cleanup ledger ----------------------------------------------------------------

--- Registers an undo action; they run last-in-first-out at the end of the run.
-- `undo` (optional) describes it for `kmsrun cleanup OUTDIR`, which undoes what a
-- killed run left: {kind = "process", pid = n}, {kind = "dir", path = p},
-- {kind = "vm", url = vmm_url, id = vm_id}, {kind = "file", path = p, content = original}.
-- The ledger is appended (and fsynced) at once, so it survives SIGKILL.
function Run:defer(description, fn, undo)
  self.ledger_seq = (self.ledger_seq or 0) + 1
  local entry = { description = description, fn = fn, id = self.ledger_seq }
  self.ledger[#self.ledger + 1] = entry
  self:check_written("ledger.ndjson", self.evidence:append_json("ledger.ndjson", { action = "register", id = entry.id,
    description = description, undo = undo, time = time.wall() }, { sync = true }))
  return entry
end

function Run:run_cleanups()
  while #self.ledger > 0 do
    local entry = table.remove(self.ledger)
    local t = task.spawn(entry.fn)
    local ok, err = pcall(t.join, t)
    local rec = { description = entry.description, status = ok and "done" or "failed", error = (not ok) and tostring(err) or nil }
    self.cleanup_log[#self.cleanup_log + 1] = rec
    self:check_written("ledger.ndjson", self.evidence:append_json("ledger.ndjson", { action = ok and "undone" or "undo_failed",
      id = entry.id, description = entry.description, error = rec.error, time = time.wall() }, { sync = true }))
    events.emit("cleanup", rec)
    if not ok then
      self.cleanup_failed = true
      io.stderr:write("kmsrun: cleanup failed: ", entry.description, ": ", tostring(err), "\n")
    end
  end
end

-- Services for the DSL ------------------------------------------------------------

function Run:note(msg)
  local ctx = steps.context()
  local c = ctx and ctx.case
  if c then c.notes = c.notes or {}; c.notes[#c.notes + 1] = msg end
  self.console:line("  " .. msg)
end

function Run:transcript(entry)
  self.transcript_seq = self.transcript_seq + 1
  local ctx = steps.context()
  entry.seq = self.transcript_seq
  entry.time = time.wall()
  entry.case = ctx and ctx.case and ctx.case.name
  entry.step = ctx and ctx.step and ctx.step.name
  -- Tables and raw text alike: a non-JSON body can carry a private key too.
  if entry.response ~= nil then entry.response = redact.response(entry.response) end
  if type(entry.error) == "string" then entry.error = redact.response(entry.error) end
  self:check_written("transcript.ndjson", self.evidence:append_json("transcript.ndjson", entry))
  if ctx and ctx.case then ctx.case.last_rpc = entry end
  if ctx and ctx.step then ctx.step.rpc_seq = entry.seq end
  events.emit("rpc", { kms = entry.kms, method = entry.method, status = entry.status, error = entry.error,
    duration = entry.duration, url = entry.url, case = entry.case, step = entry.step, transcript_seq = entry.seq,
    transport_error = entry.transport_error })
  return entry.seq
end

function Run:rpc(h, method, body, opts)
  local base = method:match("^Onboard%.") and h.onboard_url or h.runtime_url
  local left = self:time_left()
  if left <= 0 then steps.fail("time left for " .. h.name .. " " .. method, "the deadline has passed", nil, "TIMEOUT") end
  -- Past the enclosing deadline by a margin: at the deadline its watchdog cancels the
  -- call and reports a timeout naming the RPC; the HTTP timeout racing it would turn
  -- that into a transport failure (exit 1 instead of 4).
  local call_opts = { timeout = math.min(opts.timeout or 30, math.max(0.001, left) + 1) }
  if opts.client_cert then call_opts.tls = { insecure = true, cert = opts.client_cert.cert, key = opts.client_cert.key } end
  local res, err, code = prpc.call(base, method, body, call_opts)
  local seq = self:transcript({ kms = h.name, method = method, url = prpc.url(base, method),
    request = body, status = res and res.status, response = res and res.body, error = res and res.error or err,
    transport_error = code, duration = res and res.time })
  if not res then
    steps.fail("an HTTP response from " .. h.name .. " " .. method, string.format("%s (%s)", err, code), self:log_tail(h),
      code == "ETIMEDOUT" and "TIMEOUT" or "TRANSPORT")
  end
  res.transcript_seq = seq -- which transcript entry expect_error / expect_ok judge
  if opts.save then self.evidence:json("rpc/" .. opts.save .. ".json", {
    kms = h.name, method = method, request = body, status = res.status, response = redact.response(res.body) }) end
  return res
end

function Run:log_tail(h)
  if self.target.log_tail then
    local t = self.target.log_tail(self, h, 12)
    if t and t ~= "" then return "last log lines of " .. h.name .. ":\n" .. t end
  end
  return nil
end

function Run:deploy(h)
  h.auth_url = self.target.auth_url_for_kms(self, h.auth)
  local ok, err = self.target.deploy(self, h)
  if not ok then
    self.infra_error = true
    steps.fail(h.name .. " deployed on " .. self.target.name, tostring(err), nil, "INFRA")
  end
  h.deployed = true
  h.mode = "onboard"
  -- A target that registers removal itself (before creating, so an interrupted
  -- create is undone too) says so; otherwise the runner does it here.
  if not self.target.registers_removal then
    self:defer("remove " .. h.name, function() self.target.remove(self, h) end)
  end
  events.emit("deploy", { kms = h.name, onboard_url = h.onboard_url, target = self.target.name })
end

function Run:runtime_ready(h, deadline)
  if self.target.runtime_ready then return self.target.runtime_ready(self, h, deadline) end
  return true
end

function Run:policy_state()
  local s = {}
  for name, v in pairs(self.policy_versions) do s[name] = { version = v.version, sha256 = v.sha256, policy = v.description } end
  return s
end

-- Deadlines (deadlines.lua): Run:time_left(), Run:guard(seconds, what, fn).
local deadlines = require "kmsrun.run.deadlines"
for name, fn in pairs(deadlines.methods) do Run[name] = fn end
M.is_timeout = deadlines.is_timeout

function Run:start_auth(auth)
  local server = require "kmsrun.emu.auth.server"
  local policies = require "kmsrun.kms.policies"
  local initial = auth.spec.policy or policies.deny_all()
  if initial.__kind ~= "policy" then initial = policies.custom(initial) end
  if auth.spec.url then
    auth.url = auth.spec.url:gsub("/+$", "")
    auth.external = true
    if auth.spec.config_path then
      local original = fs.read(auth.spec.config_path)
      -- The undo record lets `kmsrun cleanup` restore the file after a killed run.
      local path = auth.spec.config_path
      if path:sub(1, 1) ~= "/" then path = fs.cwd() .. "/" .. path end
      self:defer("restore the original policy of " .. auth.name, function()
        if original then fs.write(auth.spec.config_path, original, { mode = 420 }) end
      end, original and { kind = "file", path = path, content = original } or nil)
    end
  else
    self.evidence:mkdir("logs")
    local srv, err = server.start { host = "127.0.0.1", port = 0, policy = initial.config,
      log_path = self.evidence:path("logs/" .. auth.name .. ".decisions.ndjson") }
    if not srv then
      self.infra_error = true
      error("cannot start auth server " .. auth.name .. ": " .. tostring(err), 0)
    end
    auth.server = srv
    auth.url = srv.url
    self:defer("stop auth server " .. auth.name, function() srv:close() end)
  end
  self.policy_versions[auth.name] = { version = 0, sha256 = "", description = initial.description }
  -- The first flip's diff starts from the policy the server started with.
  self.policy_texts = self.policy_texts or {}
  self.policy_texts[auth.name] = json.encode(initial.config, { pretty = true }) .. "\n"
end

local function sha256_hex(s) return crypto.hex(crypto.sha256(s)) end

function Run:set_policy(auth, policy)
  local pretty = json.encode(policy.config, { pretty = true }) .. "\n"
  local text = pretty
  local version, sha
  if auth.server then
    local err
    version, sha = auth.server:set_policy(policy.config)
    if not version then steps.fail("policy of " .. auth.name .. " replaced", tostring(sha), nil, "INFRA") end
    -- The evidence holds the exact bytes served, so it hashes to the recorded value.
    text, err = auth.server:policy_text()
    if not text then steps.fail("policy of " .. auth.name .. " readable", tostring(err), nil, "INFRA") end
    -- Confirm the server serves what we set before the next step runs: it
    -- answers over HTTP and its policy in force hashes to what was written.
    local info, herr = require("kmsrun.http").request(auth.url .. "/", { timeout = 5 })
    if not info or info.status ~= 200 then
      steps.fail("auth server " .. auth.name .. " answering GET /", info and ("HTTP " .. info.status) or herr, nil, "INFRA")
    end
    local live = auth.server:policy_hash()
    if live ~= sha then steps.fail("auth server " .. auth.name .. " serving policy " .. sha, "serving " .. tostring(live), nil, "INFRA") end
  elseif auth.spec.config_path then
    local ok, err = fs.write(auth.spec.config_path, text, { mode = 420 })
    if not ok then steps.fail("policy written to " .. auth.spec.config_path, err, nil, "INFRA") end
    local back = fs.read(auth.spec.config_path)
    sha = sha256_hex(text)
    if not back or sha256_hex(back) ~= sha then steps.fail("policy file holds the new policy", "file differs after write", nil, "INFRA") end
    version = (self.policy_versions[auth.name].version or 0) + 1
  else
    steps.fail("a policy source for " .. auth.name, "external auth server without config_path cannot be changed", nil, "INFRA")
  end
  local prev = self.policy_versions[auth.name]
  self.policy_versions[auth.name] = { version = version, sha256 = sha, description = policy.description }
  self.policy_count = (self.policy_count or 0) + 1
  local file = string.format("policies/%03d-%s-v%d.json", self.policy_count, auth.name, version)
  self.evidence:write(file, text)
  -- The diff compares pretty-printed forms so a changed list entry is one line.
  local diff = require("kmsrun.lib.linediff").unified(self.policy_texts[auth.name] or "", pretty,
    (prev and prev.description or "initial"), policy.description)
  self.policy_texts[auth.name] = pretty
  self.evidence:write(file:gsub("%.json$", ".diff"), diff)
  events.emit("policy", { auth = auth.name, version = version, sha256 = sha, policy = policy.description,
    previous = prev and prev.description, file = file })
  return version, sha
end

-- Phases -----------------------------------------------------------------------------

local function run_block(self, block, kind)
  block.steps = block.steps or {}
  local started = time.now()
  local limit = block.timeout or self.opts.case_timeout or self.target.case_timeout or 600
  local t = task.spawn(function()
    steps.set_context({ run = self, case = block, depth = 0, kind = kind })
    return self:guard(limit, kind == "case" and ("case '" .. block.name .. "'") or block.name, block.fn)
  end)
  self.current_task = t
  local ok, err = pcall(t.join, t)
  self.current_task = nil
  steps.set_context(nil)
  block.duration = time.now() - started
  if ok then
    block.status = "passed"
  elseif deadlines.is_timeout(err) then
    block.status = "timeout"
    block.error = tostring(err)
    block.code = "TIMEOUT"
    self.timed_out = true
    local last = block.steps[#block.steps]
    if last and last.status ~= "passed" then
      last.status = "timeout"
      last.actual = "no result before the deadline; waiting for: " .. err.waiting
    end
  elseif task.is_cancelled(err) or self.interrupted then
    block.status = "interrupted"
    block.error = "interrupted by " .. tostring(self.interrupted or "cancel")
    block.code = "CANCELLED"
  elseif steps.is_failure(err) then
    block.status = "failed"
    block.error = string.format("step '%s' failed at %s", err.step, err.location or "?")
    block.code = err.code or "EXPECTATION"
  elseif type(err) == "table" and err.usage then
    block.status = "error"
    block.error = err.message
    block.code = "USAGE"
    self.usage_error = err.message
  else
    block.status = "error"
    block.error = (t.traceback or tostring(err))
    block.code = "RUNTIME"
    self.runtime_error = block.error
  end
  return block.status
end

-- The same selection `kmsrun plan --case` shows (run/cases.lua).
local function select_cases(self)
  return require("kmsrun.run.cases").select(self.runbook.cases, self.opts.cases or {}, self.opts.tags or {})
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

-- Phases of a run --------------------------------------------------------------

-- Opens the output directory and selects the cases; nil and an exit code if it cannot.
function Run:prepare()
  local out_dir = self.opts.out or string.format("kmsrun-out/%s-%s",
    self.runbook.path:match("([^/]+)%.lua$") or "runbook", os.date("%Y%m%d-%H%M%S"))
  if not self.opts.out and fs.exists(out_dir) then out_dir = out_dir .. "-" .. crypto.hex(crypto.random(2)) end
  local ev, err = evidence.open(out_dir)
  if not ev then
    io.stderr:write("kmsrun: cannot create the output directory: ", tostring(err), "\n")
    return nil, exit_codes.USAGE
  end
  self.evidence = ev
  local cases, serr = select_cases(self)
  if not cases then
    io.stderr:write("kmsrun: ", serr, "\n")
    return nil, exit_codes.USAGE
  end
  self.selected_cases = cases
  for _, c in ipairs(cases) do c.status, c.steps = nil, {} end
  return out_dir
end

-- First SIGINT/SIGTERM: cancel the running block, then clean up and report.
-- Second: stop now (the host still kills every child).
function Run:handle_signals()
  core.on_signal(function(name)
    if self.interrupted then
      io.stderr:write("\nkmsrun: second ", name, ": stopping now; processes are killed, no further cleanup\n")
      self.forced = true
      core.stop()
      return
    end
    self.interrupted = name
    io.stderr:write("\nkmsrun: ", name, " received: cancelling, cleaning up and writing the report (again to force)\n")
    if self.current_task then self.current_task:cancel() end
  end)
end

-- Auth servers first: KMS configs point at them. Returns whether they all started.
function Run:start_auth_servers()
  local ok, aerr = pcall(function()
    for _, auth in ipairs(self.runbook.auths) do self:start_auth(auth) end
  end)
  if not ok then
    self.error = tostring(aerr)
    self.infra_error = true
  end
  return ok
end

-- Setup, if declared; returns true if the cases may run.
function Run:run_setup()
  if not self.runbook.setup or self.interrupted then return true end
  self.setup_case = self.runbook.setup
  self.console:section("setup: " .. self.setup_case.name)
  local status = run_block(self, self.setup_case, "setup")
  if status == "passed" then return true end
  self.error = "setup failed: " .. tostring(self.setup_case.error)
  if status == "failed" then self.infra_error = true end
  return false
end

-- The selected cases in order; the first failure stops the rest unless --keep-going.
function Run:run_cases(cases, stop)
  for i, c in ipairs(cases) do
    if not stop and self.run_deadline and time.now() >= self.run_deadline then
      stop = true
      self.timed_out = true
      self.error = "the run's deadline (--timeout) passed"
    end
    if stop or self.interrupted then
      c.status = "skipped"
      c.skip_reason = self.interrupted and "run interrupted" or "an earlier failure stopped the run (use --keep-going)"
      events.emit("case_end", { case = c.name, id = c.id, status = "skipped", duration = 0, reason = c.skip_reason })
    else
      self.console:case_start(c, i, #cases)
      events.emit("case_start", { case = c.name, id = c.id })
      run_block(self, c, "case")
      events.emit("case_end", { case = c.name, id = c.id, status = c.status, duration = c.duration, error = c.error,
        code = c.code })
      self.console:case_end(c)
      if c.status ~= "passed" and not self.opts.keep_going then stop = true end
      if c.status == "error" and self.usage_error then stop = true end
    end
  end
end

-- Teardown, cleanups, the exit code, report and archive, the leak scan.
function Run:finish()
  if self.runbook.teardown and not self.forced then
    self.console:section("teardown")
    local td = self.runbook.teardown
    if run_block(self, td, "teardown") ~= "passed" then
      -- Not a case: without this the failure would show nowhere.
      self.error = self.error or ("teardown " .. td.status .. ": " .. tostring(td.error))
    end
  end
  if not self.forced then self:run_cleanups() end

  local counts = self:tally()

  local code
  if self.interrupted then code = exit_codes.INTERRUPTED
  elseif self.usage_error or self.runtime_error then code = exit_codes.USAGE
  elseif self.timed_out then code = exit_codes.TIMEOUT
  elseif self.infra_error then code = exit_codes.INFRA
  elseif counts.failed > 0 then code = exit_codes.FAILED
  elseif self.cleanup_failed then code = exit_codes.CLEANUP
  else code = exit_codes.OK end
  self.exit_code = code
  self.status = exit_codes.status(code)

  self:write_outputs()
  local leak = self.evidence:leak_scan()
  if leak then
    io.stderr:write("kmsrun: a secret reached the output directory (", leak, "); failing the run\n")
    self.exit_code, self.status = exit_codes.SECRET_LEAK, exit_codes.status(exit_codes.SECRET_LEAK)
    code = exit_codes.SECRET_LEAK
  end
  events.emit("run_end", { status = self.status, exit_code = code, passed = counts.passed, failed = counts.failed,
    skipped = counts.skipped, error = self.error })
  self.console:summary(self, counts)
  return code
end

--- Runs everything; returns the exit code.
function Run:execute()
  local out_dir, code = self:prepare()
  if not out_dir then return code end
  self:handle_signals()
  self.console:banner(self)
  events.emit("run_start", { runbook = self.runbook.path, target = self.target.name, output = out_dir })
  local ready = self:start_auth_servers() and self:run_setup()
  self:run_cases(self.selected_cases, not ready)
  return self:finish()
end

return M
