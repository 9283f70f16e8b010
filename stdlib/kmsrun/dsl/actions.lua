-- The run-time primitives of the DSL: deploy, wait_ready, capture_attestation,
-- rpc, finish, set_policy, parallel, sleep, step, log, archive.
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"
local prpc = require "kmsrun.kms.prpc"
local http = require "kmsrun.http"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local events = require "kmsrun.report.events"
local policies = require "kmsrun.kms.policies"
local checks = require "kmsrun.dsl.attestation_checks"
local policy_check = require "kmsrun.dsl.policy_check"

local M = {}

-- An evidence name from the runbook must name a file inside the output directory.
local function check_save_name(what, name)
  local bad = require("kmsrun.report.evidence").check_name(name)
  if bad then api.usage_error(what .. ": " .. bad) end
end

local function run()
  local ctx = steps.context()
  if not ctx or not ctx.run then
    -- Called while the runbook loads (declarations only): say so at the runbook's line.
    api.usage_error("actions (deploy, wait_ready, rpc, set_policy, step, sleep, log, save, archive, parallel, ...) "
      .. "run only inside setup(), a case or teardown(), not while the runbook loads")
  end
  return ctx.run
end

local function names(hs)
  local n = {}
  for _, h in ipairs(hs) do n[#n + 1] = h.name end
  return table.concat(n, ", ")
end

local function require_deployed(h, what)
  if not h.deployed then
    api.usage_error(string.format("%s: %s is not deployed yet (call deploy(%s) first)", what, h.name, h.name))
  end
end

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

M.rpc = api.define {
  name = "rpc", group = "rpc",
  signature = "rpc(kms, method, [body], [opts])", returns = "response",
  args = { { "kms", "kms" }, { "method", "string" }, { "body", "table|string?" },
    { "opts", "table?", options = { save = true, timeout = true, client_cert = true } } },
  doc = [[Calls a prpc method (`Onboard.*` on the onboard endpoint, `KMS.*` on the runtime TLS endpoint) with a JSON body (default `{}`) and returns the response **whatever the HTTP status**: `res.status`, `res.body` (decoded JSON), `res.error` (the RPC error string, or nil), `res.ok` (200 and no error), `res.time`, and on the runtime (TLS) endpoint `res.server_cert` (the server's certificate, PEM) and `res.certs` (the chain it presented, leaf first). An RPC error is data for `expect_error`, not an exception; only a transport failure (refused, timeout, TLS) fails the step. Every call goes to the transcript with private keys redacted; `opts.save = "name"` also saves the redacted response as evidence `rpc/<name>.json`. `opts.timeout` (seconds, default 30). `opts.client_cert` presents a client certificate: an `attested_client(...)` (an attested caller the KMS accepts) or any `{cert=, key=}`.]],
  example = [[local res = rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "bootstrap-src-denied" })
expect_error(res, "KMS is not allowed to bootstrap: boot denied: ")]],
  fn = function(h, method, body, opts)
    if opts and opts.save ~= nil then check_save_name("rpc: opts.save", opts.save) end
    require_deployed(h, "rpc")
    return steps.run(string.format("rpc %s %s", h.name, method), function(step)
      local res = run():rpc(h, method, body, opts or {})
      step.actual = string.format("HTTP %d%s", res.status, res.error and (": " .. res.error) or "")
      return res
    end)
  end,
}

M.finish = api.define {
  name = "finish", group = "rpc",
  signature = "finish(kms, [opts])", returns = "nothing",
  args = { { "kms", "kms" }, { "opts", "table?", options = { save = true } } },
  doc = [[Ends onboard mode with `GET /finish` (not POST) and expects `OK`; the KMS then serves `KMS.*` over TLS on its runtime endpoint, so the handle switches to runtime mode. Follow it with `wait_ready(kms)`. `opts.save = "name"` keeps the answer as evidence `rpc/<name>.json`, like `rpc`'s.]],
  example = [[finish(src, { save = "finish-src" })
wait_ready(src)]],
  fn = function(h, opts)
    require_deployed(h, "finish")
    if opts and opts.save ~= nil then check_save_name("finish: opts.save", opts.save) end
    return steps.run("finish " .. h.name, function(step)
      local r = run()
      local url = h.onboard_url .. "/finish"
      local res, err, code = http.request(url, { timeout = 30 })
      local seq = r:transcript({ kms = h.name, method = "GET /finish", url = url, status = res and res.status, response = res and res.body, error = err, duration = res and res.time })
      step.rpc_seq = seq
      if opts and opts.save then r.evidence:json("rpc/" .. opts.save .. ".json", { kms = h.name, method = "GET /finish",
        status = res and res.status, response = res and redact.response(res.body), error = err }) end
      if not res or res.status ~= 200 or res.body ~= "OK" then
        steps.fail("HTTP 200 OK from GET /finish", res and string.format("HTTP %d %s", res.status, res.body) or err, r:log_tail(h),
          res and "EXPECTATION" or (code == "ETIMEDOUT" and "TIMEOUT" or "TRANSPORT"))
      end
      h.mode = "runtime"
      step.actual = "OK"
    end)
  end,
}

M.source_url = api.define {
  name = "source_url", group = "rpc",
  signature = "source_url(kms)", returns = "string",
  args = { { "kms", "kms" } },
  doc = [[The `source_url` another KMS must use to onboard from this one: its runtime prpc URL as seen from inside another CVM (`https://10.0.2.2:<port>/prpc` on vmm, loopback on sim), never the operator's `127.0.0.1`.]],
  example = [[rpc(dst, "Onboard.Onboard", { source_url = source_url(src), domain = var.dst_domain })]],
  fn = function(h)
    require_deployed(h, "source_url")
    return h.guest.runtime_url .. "/prpc"
  end,
}

M.set_policy = api.define {
  name = "set_policy", group = "policy",
  signature = "set_policy(auth, policy)", returns = "version",
  args = { { "auth", "auth" }, { "policy", "policy|table" } },
  doc = [[Replaces the auth server's policy atomically and confirms the server serves it before the next step (version and SHA-256 checked). `policy` is built by `deny_all()`, `allow(...)`, `deny_by_mr(...)`, `policy(name, config)`, or is a bare auth-simple config table (checked against auth-simple's schema: a wrong type or unknown key is an error, since auth-simple would silently deny everything or ignore the key). The snapshot is saved as evidence `policies/<n>-<auth>.json` and every later step records which policy version was in force.]],
  example = [[set_policy(auth_src, deny_by_mr(src))
set_policy(auth_src, allow(src, dst))]],
  fn = function(auth, policy)
    if policy.__kind ~= "policy" then
      local ok, err = policy_check.check(policy)
      if not ok then api.usage_error("set_policy: " .. err) end
      policy = policies.custom(policy)
    end
    return steps.run(string.format("set_policy %s = %s", auth.name, policy.description), function(step)
      local version, sha = run():set_policy(auth, policy)
      step.actual = string.format("version %d, sha256 %s, live", version, sha:sub(1, 12))
      return version
    end)
  end,
}

M.parallel = api.define {
  name = "parallel", group = "flow",
  signature = "parallel(fn, ...)", returns = "the first result of each function",
  args = { { "fn", "function", variadic = true } },
  doc = [[Runs the functions concurrently and returns the first result of each, in order. The first error cancels the others (their cleanups run) and is raised. It is recorded as one step at its line (`parallel (N branches)`), like `step(name, fn)`: the branches' calls are part of it (each RPC is still its own transcript entry); inside a `step`, it is part of that step.]],
  example = [[local a, b = parallel(function() return rpc(src, "KMS.GetMeta") end,
                       function() return rpc(dst, "KMS.GetMeta") end)]],
  fn = function(...)
    run()
    -- Concurrent branches cannot each be "the current step" (one step at a time is
    -- recorded), so the group is the step, located at the parallel() call.
    local fns = table.pack(...)
    return steps.run(string.format("parallel (%d branches)", fns.n), function()
      return task.parallel(table.unpack(fns, 1, fns.n))
    end)
  end,
}

M.sleep = api.define {
  name = "sleep", group = "flow",
  signature = "sleep(seconds)", returns = "nothing",
  args = { { "seconds", "number" } },
  doc = [[Waits; other tasks keep running. Prefer `wait_ready` to sleeping for readiness.]],
  example = [[sleep(0.5)]],
  fn = function(seconds)
    run()
    return time.sleep(seconds)
  end,
}

M.step = api.define {
  name = "step", group = "flow",
  signature = "step(name, fn, [opts])", returns = "what fn returns",
  args = { { "name", "string" }, { "fn", "function" }, { "opts", "table?", options = { timeout = true } } },
  doc = [[Records `fn` as one named step: the actions inside it are part of that step in the report. `opts.timeout` (seconds) is the step's deadline: what it waits for then is cancelled and the step fails with `timeout`, naming what it was waiting for. Deadlines nest: an RPC inside never waits past its step, its case (`case(name, {timeout = s}, fn)`) or the run (`--timeout`).]],
  example = [[step("onboard dst from src", function()
  expect_ok(rpc(dst, "Onboard.Onboard", { source_url = source_url(src), domain = var.dst_domain }))
end, { timeout = 120 })]],
  fn = function(name, fn, opts)
    run()
    return steps.run(name, function()
      if opts and opts.timeout then return run():guard(opts.timeout, "step '" .. name .. "'", fn) end
      return fn()
    end)
  end,
}

M.log = api.define {
  name = "log", group = "flow",
  signature = "log(format, ...)", returns = "nothing",
  args = { { "format", "string" } },
  doc = [[Prints a line (string.format) to the terminal and records it in the report of the current case.]],
  example = [[log("src MR %s", src.attestation.mr_aggregated)]],
  fn = function(fmt, ...)
    local r = run()
    local ok, msg = pcall(string.format, fmt, ...)
    -- A bad format is the runbook's mistake: report it at its line.
    if not ok then api.usage_error("log: " .. tostring(msg):gsub("^bad argument #%d+ to 'format' ", "")) end
    r:note(msg)
  end,
}

M.save = api.define {
  name = "save", group = "evidence",
  signature = "save(name, value)", returns = "path",
  args = { { "name", "string" }, { "value", "any" } },
  doc = [[Saves a value (table as JSON, or string) as evidence `saved/<name>.json` (secrets redacted). `name` stays inside the output directory: an absolute name or a `..` component is an error, and no symbolic link is followed.]],
  example = [[save("dst-meta", rpc(dst, "KMS.GetMeta").body)]],
  fn = function(name, value)
    local r = run()
    check_save_name("save", name)
    if type(value) == "table" and value.__kind == "response" then value = value.body end
    if type(value) == "table" then value = redact.response(value) end
    return r.evidence:write("saved/" .. name .. ".json", type(value) == "string" and value or json.encode(value, { pretty = true }))
  end,
}

M.secret = api.define {
  name = "secret", group = "evidence",
  signature = "secret(value)", returns = "value",
  args = { { "value", "string" } },
  doc = [[Marks a value as secret: it is replaced by a `[REDACTED sha256:…]` marker in every transcript, report, log and archive and on the terminal, in every form a key or token takes in practice (upper/lower case, hex, base64, base64url; for a PEM key the one-line PEM, the DER in base64/hex and the private scalar in hex); files written before are scrubbed again at the end of the run. Private keys returned by RPCs are marked automatically. Values shorter than 4 bytes are refused: they cannot be scrubbed without mangling ordinary text.]],
  example = [[local token = secret(var.vmm_token)]],
  fn = function(value)
    if #value < redact.MIN_LENGTH then
      api.usage_error(string.format("secret: a value shorter than %d bytes cannot be kept out of the evidence", redact.MIN_LENGTH))
    end
    redact.add(value)
    return value
  end,
}

M.archive = api.define {
  name = "archive", group = "evidence",
  signature = "archive()", returns = "path",
  args = {},
  doc = [[Writes the evidence bundle now (`evidence.tar.gz` with a SHA-256 manifest). It is also written automatically at the end of every run, including failed and interrupted ones.]],
  example = [[archive()]],
  fn = function() return run():write_outputs() end,
}

return M
