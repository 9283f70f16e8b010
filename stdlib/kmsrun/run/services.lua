-- What the DSL's actions ask of the run: notes, the RPC transcript, RPCs with
-- the run's deadlines, deploys through the target, log tails.
local time = require "kmsrun.time"
local prpc = require "kmsrun.kms.prpc"
local redact = require "kmsrun.report.redact"
local events = require "kmsrun.report.events"
local steps = require "kmsrun.dsl.steps"

local Run = {} -- the methods, mixed into run/runner.lua's Run
local M = { methods = Run }

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
  local client = opts.client_cert
  -- An attested client without a certificate gets one from the temp CA of the KMS it calls.
  if client and client.__kind == "attested_client" and not client.cert then client = client:issue_for(self, h) end
  if client then call_opts.tls = { insecure = true, cert = client.cert, key = client.key } end
  local res, err, code = prpc.call(base, method, body, call_opts)
  local seq = self:transcript({ kms = h.name, method = method, url = prpc.url(base, method),
    request = body, status = res and res.status, response = res and res.body, error = res and res.error or err,
    transport_error = code, duration = res and res.time })
  if not res then
    -- An instance that died under the call is a crash, not a network problem: say so
    -- (the code stays TRANSPORT, "no HTTP answer"; the wording names the crash).
    local gone = code ~= "ETIMEDOUT" and self.target.exited and self.target.exited(self.target_ctx, h)
    local actual = gone and string.format("%s crashed during the call: %s (the client saw: %s, %s)", h.name, gone, err, code)
      or string.format("%s (%s)", err, code)
    steps.fail("an HTTP response from " .. h.name .. " " .. method, actual, self:log_tail(h),
      code == "ETIMEDOUT" and "TIMEOUT" or "TRANSPORT")
  end
  res.transcript_seq = seq -- which transcript entry expect_error / expect_ok judge
  if opts.save then self.evidence:json("rpc/" .. opts.save .. ".json", {
    kms = h.name, method = method, request = body, status = res.status, response = redact.response(res.body) }) end
  return res
end

function Run:log_tail(h)
  if self.target.log_tail then
    local t = self.target.log_tail(self.target_ctx, h, 12)
    if t and t ~= "" then return "last log lines of " .. h.name .. ":\n" .. t end
  end
  return nil
end

function Run:deploy(h)
  h.auth_url = self.target.auth_url_for_kms(self.target_ctx, h.auth)
  local ok, err = self.target.deploy(self.target_ctx, h)
  if not ok then
    self.infra_error = true
    steps.fail(h.name .. " deployed on " .. self.target.name, tostring(err), nil, "INFRA")
  end
  h.deployed = true
  h.mode = "onboard"
  -- A target that registers removal itself (before creating, so an interrupted
  -- create is undone too) says so; otherwise the runner does it here.
  if not self.target.registers_removal then
    self:defer("remove " .. h.name, function() self.target.remove(self.target_ctx, h) end)
  end
  events.emit("deploy", { kms = h.name, onboard_url = h.onboard_url, target = self.target.name })
end

function Run:runtime_ready(h, deadline)
  if self.target.runtime_ready then return self.target.runtime_ready(self.target_ctx, h, deadline) end
  return true
end

return M
