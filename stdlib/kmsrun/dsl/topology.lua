-- The DSL's topology actions: deploy, wait_ready (probing each instance's real endpoint
-- until it answers 200) and capture_attestation. dsl/actions.lua defines them first
-- (docs/reference.md lists them in that order) and exports them with the others.
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"
local prpc = require "kmsrun.kms.prpc"
local http = require "kmsrun.http"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local json = require "kmsrun.lib.json"
local events = require "kmsrun.report.events"
local checks = require "kmsrun.dsl.attestation_checks"
local ctx = require "kmsrun.dsl.action_context"
local run, names, require_deployed = ctx.run, ctx.names, ctx.require_deployed

local M = {}

M.deploy = api.define {
  name = "deploy", group = "topology",
  signature = "deploy(kms, ...)", returns = "nothing",
  args = { { "kms", "kms", variadic = true } },
  doc = [[Starts the given KMS instances on the run's target, concurrently. Each one is configured in onboard mode (`core.onboard.enabled = true`, empty `auto_bootstrap_domain`) with webhook auth pointing at its auth server as reachable from where the KMS runs. Its removal is registered for cleanup the moment it is created. Fails the step (with the tail of the instance's log) if an instance cannot be started.]],
  example = [[deploy(src, dst)]],
  fn = function(...)
    local hs = { ... }
    return steps.run("deploy " .. names(hs), function(step)
      local r = run()
      local fns = {}
      for _, h in ipairs(hs) do
        fns[#fns + 1] = function() return r:deploy(h) end
      end
      task.parallel(table.unpack(fns))
      local urls = {}
      for _, h in ipairs(hs) do urls[#urls + 1] = h.name .. " " .. h.onboard_url end
      step.actual = table.concat(urls, "; ")
    end)
  end,
}

-- The probe of a mode: a prpc method, or a plain GET path (prefixed "GET ").
-- An instance without attestation can never answer GetAttestationInfo with 200,
-- so its onboard endpoint is probed with /health.
local function probe(h)
  if h.mode == "runtime" then return "KMS.GetMeta", h.runtime_url end
  if h.spec.attestation == false then return "GET /health", h.onboard_url end
  return "Onboard.GetAttestationInfo", h.onboard_url
end

local function probe_once(method, base, timeout)
  local path = method:match("^GET (/.*)$")
  if not path then return prpc.call(base, method, nil, { timeout = timeout }) end
  local res, err, code = http.request(base .. path, { timeout = timeout })
  if not res then return nil, err, code end
  return { status = res.status, raw = res.body, error = res.status ~= 200 and res.body or nil }
end

local function wait_one(h, opts, console)
  local r = run()
  local deadline = time.now() + opts.timeout
  local interval = opts.interval
  local attempts, last, unverified_since = 0, "no attempt yet", nil
  if h.mode == "runtime" then
    local ok, err = r:runtime_ready(h, deadline)
    if not ok then steps.fail("runtime endpoint of " .. h.name .. " announced", err, nil, "TIMEOUT") end
  end
  local method, base = probe(h)
  local started = time.now()
  local next_report = started + 2
  while true do
    attempts = attempts + 1
    local res, err = probe_once(method, base, math.max(1, math.min(10, deadline - time.now())))
    if res and res.status == 200 then
      events.emit("ready", { kms = h.name, probe = method, attempts = attempts, waited = time.now() - started })
      return attempts
    end
    last = res and string.format("HTTP %d %s", res.status, res.error or res.raw:sub(1, 200)) or err
    events.emit("retry", { kms = h.name, probe = method, attempt = attempts, result = last })
    -- A KMS that cannot verify its own quote will not by waiting (its guest agent and
    -- trust anchors are fixed): after a grace for a collateral hiccup, say so.
    if checks.unverifiable(res) then
      unverified_since = unverified_since or time.now()
      if time.now() - unverified_since >= checks.verify_grace(opts.timeout) then checks.failed_call(h, res) end
    else
      unverified_since = nil
    end
    -- A target that can tell the instance is dead or crash-looping (the vmm
    -- target asks the VMM and the guest agent) fails the wait now, not at the timeout.
    local why = r.target.probe_failed and r.target.probe_failed(r.target_ctx, h)
    if why then
      steps.fail(string.format("HTTP 200 from %s %s within %g s", h.name, method, opts.timeout),
        string.format("%s after %d attempts: %s", last, attempts, why), r:log_tail(h), "INFRA")
    end
    if time.now() >= deadline then
      steps.fail(string.format("HTTP 200 from %s %s within %g s", h.name, method, opts.timeout),
        string.format("%s after %d attempts", last, attempts), r:log_tail(h), "TIMEOUT")
    end
    if time.now() >= next_report then
      console:progress(string.format("waiting for %s %s (%.0f s, last: %s)", h.name, method, time.now() - started, last))
      next_report = time.now() + 10
    end
    time.sleep(math.min(interval, math.max(0, deadline - time.now())))
    interval = math.min(interval * opts.backoff, opts.max_interval)
  end
end

M.wait_ready = api.define {
  name = "wait_ready", group = "topology",
  signature = "wait_ready(kms, ..., [opts])", returns = "nothing",
  args = { { "kms", "kms", variadic = true },
    { "opts", "table?", options = { timeout = true, interval = true, backoff = true, max_interval = true } } },
  doc = [[Waits until every given KMS answers on its real endpoint — never a VM status: in onboard mode `Onboard.GetAttestationInfo` (`GET /health` for an instance deployed with `attestation = false`, which cannot attest), after `finish` `KMS.GetMeta` over TLS; only an HTTP 200 counts. Polls with backoff and shows progress. A trailing options table may set `timeout` (seconds, default from the target: 30 on sim, 600 on vmm), `interval` (first delay, default 0.01), `backoff` (factor, default 1.5) and `max_interval` (default 2). On timeout the step fails with the last answer and the tail of the instance's log. A KMS answering `Failed to verify attestation` (it cannot verify its own quote: no trust anchor for its guest agent's signer) fails the step sooner, once that answer has lasted a tenth of the timeout (2 to 30 s).]],
  example = [[wait_ready(src, dst)
wait_ready(src, { timeout = 900 })]],
  fn = function(...)
    -- Types and option names were checked against the spec above.
    local args, opts = api.split_trailing_options(api.functions.wait_ready, table.pack(...))
    opts = opts or {}
    if args.n == 0 then api.usage_error("wait_ready: give at least one kms handle") end
    local hs = {}
    for i = 1, args.n do
      require_deployed(args[i], "wait_ready")
      hs[#hs + 1] = args[i]
    end
    local r = run()
    local defaults = r.target.wait_defaults or {}
    local o = {
      -- 1 s past an enclosing deadline, so that deadline's guard wins and the
      -- step is reported as a timeout naming what it waited for.
      timeout = math.min(opts.timeout or defaults.timeout or 30, math.max(0, r:time_left() + 1)),
      interval = opts.interval or defaults.interval or 0.01,
      backoff = opts.backoff or 1.5,
      max_interval = opts.max_interval or defaults.max_interval or 2,
    }
    local modes = {}
    for _, h in ipairs(hs) do modes[#modes + 1] = h.name .. " (" .. h.mode .. ")" end
    return steps.run("wait_ready " .. table.concat(modes, ", "), function(step)
      local fns = {}
      for _, h in ipairs(hs) do fns[#fns + 1] = function() return wait_one(h, o, r.console) end end
      local counts = { task.parallel(table.unpack(fns)) }
      step.expected = "HTTP 200 from the probe"
      step.actual = "ready after " .. table.concat(counts, ", ") .. " probe(s)"
    end)
  end,
}

M.capture_attestation = api.define {
  name = "capture_attestation", group = "topology",
  signature = "capture_attestation(kms, ...)", returns = "nothing",
  args = { { "kms", "kms", variadic = true } },
  doc = [[Calls `Onboard.GetAttestationInfo` on each KMS, checks it returns `device_id`, `mr_aggregated` and `os_image_hash`, stores the result as `kms.attestation` (the input of `allow`, `deny_by_mr`) and saves it as evidence `attestation/<name>.json`. Two KMS reporting the same `mr_aggregated` fail it ("the cases cannot tell them apart"), as does a KMS that cannot verify its own quote; an `os_image_hash` other than the one the target knows is attested gives a warning: `kms.attestation.os_image_hash` is then the attested one (`reported_os_image_hash` keeps the other) and `allow` / `deny_by_mr` of that KMS list both. Policies must be built from this run's attestation: `mr_aggregated` changes on every redeploy.]],
  example = [[capture_attestation(src, dst)
log("src MR %s", src.attestation.mr_aggregated)]],
  fn = function(...)
    local hs = { ... }
    return steps.run("capture_attestation " .. names(hs), function(step)
      local r = run()
      for _, h in ipairs(hs) do require_deployed(h, "capture_attestation") end
      -- The calls go out together (a cluster of many instances), the checks stay in order.
      local calls = {}
      for i, h in ipairs(hs) do calls[i] = function() return r:rpc(h, "Onboard.GetAttestationInfo", nil, {}) end end
      local answers = { task.parallel(table.unpack(calls)) }
      for i, h in ipairs(hs) do
        local res = answers[i]
        if not res.ok then checks.failed_call(h, res) end
        for _, f in ipairs({ "device_id", "mr_aggregated", "os_image_hash" }) do
          if type(res.body[f]) ~= "string" or res.body[f] == "" then
            steps.fail(h.name .. " attestation with field " .. f, json.encode(res.body))
          end
        end
        h.attestation = res.body
        r.evidence:json("attestation/" .. h.name .. ".json", res.body)
        checks.vm_config(r, h)
      end
      checks.distinct(r.runbook.kmss)
      step.actual = "captured"
    end)
  end,
}

return M
