-- The run-time primitives of the DSL, all exported here: rpc, finish, source_url,
-- set_policy, parallel, sleep, step, log, save, secret, archive; the topology ones
-- (deploy, wait_ready, capture_attestation) are defined in dsl/topology.lua.
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"
local http = require "kmsrun.http"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local policies = require "kmsrun.kms.policies"
local policy_check = require "kmsrun.dsl.policy_check"

local M = {}

-- The topology actions come first (their definition order is the reference's order).
local ctx = require "kmsrun.dsl.action_context"
local run, require_deployed, check_save_name = ctx.run, ctx.require_deployed, ctx.check_save_name
for name, fn in pairs(require "kmsrun.dsl.topology") do M[name] = fn end

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
