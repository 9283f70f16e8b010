-- Assertions. Each is a step; a failure names the step, the expected and the actual.
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local policies = require "kmsrun.kms.policies"
local policy_check = require "kmsrun.dsl.policy_check"

local M = {}

-- Raw bytes made readable (terminal, report, junit.xml): control bytes and bytes
-- that are not UTF-8 become \xNN.
local function printable(s)
  s = s:gsub("[%z\1-\8\11-\31\127]", function(c) return string.format("\\x%02x", c:byte()) end)
  if utf8.len(s) then return s end
  return (s:gsub("[\128-\255]", function(c) return string.format("\\x%02x", c:byte()) end))
end

local function show(res)
  if res.error then return string.format("HTTP %d, error: %s", res.status, printable(redact.response(res.error))) end
  local body = type(res.body) == "table" and json.encode(redact.response(res.body)) or redact.response(tostring(res.raw))
  if #body > 600 then body = body:sub(1, 600) .. "…" end
  return string.format("HTTP %d, %s: %s", res.status,
    res.json_error and ("body not JSON (" .. res.json_error .. ")") or "body", printable(body))
end

local function matcher(spec)
  if type(spec) == "string" then
    return function(s) return s:sub(1, #spec) == spec end, string.format("an RPC error starting with %q", spec),
      { kind = "prefix", value = spec }
  end
  if spec.equals then
    return function(s) return s == spec.equals end, string.format("the RPC error %q", spec.equals),
      { kind = "equals", value = spec.equals }
  end
  if spec.contains then
    return function(s) return s:find(spec.contains, 1, true) ~= nil end, string.format("an RPC error containing %q", spec.contains),
      { kind = "contains", value = spec.contains }
  end
  if spec.pattern then
    return function(s) return s:find(spec.pattern) ~= nil end, string.format("an RPC error matching /%s/", spec.pattern),
      { kind = "pattern", value = spec.pattern }
  end
  if spec.any then return function() return true end, "any RPC error", { kind = "any" } end
  api.usage_error("expect_error: give a prefix string or one of {equals=}, {contains=}, {pattern=}, {any=true}")
end

M.expect_error = api.define {
  name = "expect_error", group = "assert",
  signature = "expect_error(res, match)", returns = "the error string",
  args = { { "res", "response" }, { "match", "string|table", options = { equals = true, contains = true, pattern = true, any = true } } },
  doc = [[Passes if `res` is an RPC error (HTTP 400 with an `error` string) matching `match`: a plain string is a **prefix** (error chains put the outermost context first, and the inner transport text varies), or `{equals = s}`, `{contains = s}`, `{pattern = lua_pattern}`, `{any = true}`. Fails with the expected match and the actual status and body — also when the call unexpectedly succeeded.]],
  example = [[expect_error(res, "KMS is not allowed to bootstrap: boot denied: ")
expect_error(res, { contains = "Source KMS is not allowed for onboarding" })]],
  fn = function(res, spec)
    local ok, want, match = matcher(spec)
    local shown = type(spec) == "string" and spec or spec.equals or spec.contains or spec.pattern or "any"
    if #shown > 70 then shown = shown:sub(1, 70) .. "…" end
    return steps.run(string.format("expect_error %s: %q", res.method, shown), function(step)
      step.expected = want
      step.match, step.rpc_seq = match, res.transcript_seq
      step.actual = show(res)
      if not res.error or res.status ~= 400 then steps.fail(want, show(res)) end
      if not ok(res.error) then steps.fail(want, show(res)) end
      return res.error
    end)
  end,
}

M.expect_ok = api.define {
  name = "expect_ok", group = "assert",
  signature = "expect_ok(res, [fields])", returns = "res.body",
  args = { { "res", "response" }, { "fields", "table?" } },
  doc = [[Passes if `res` is HTTP 200 without an `error`, and every name in `fields` is present and non-empty in the body.]],
  example = [[expect_ok(res, { "ca_pubkey", "k256_pubkey", "attestation" })]],
  fn = function(res, fields)
    return steps.run("expect_ok " .. res.method, function(step)
      local want = "HTTP 200" .. (fields and (" with " .. table.concat(fields, ", ")) or "")
      step.expected = want
      step.fields, step.rpc_seq = fields and json.array({ table.unpack(fields) }), res.transcript_seq
      step.actual = show(res)
      if not res.ok then steps.fail(want, show(res)) end
      for _, f in ipairs(fields or {}) do
        local v
        if type(res.body) == "table" then v = res.body[f] end
        if v == nil or v == "" or v == json.null or (type(v) == "table" and next(v) == nil) then steps.fail(want, "field " .. f .. " missing or empty in " .. show(res)) end
      end
      return res.body
    end)
  end,
}

M.expect_eq = api.define {
  name = "expect_eq", group = "assert",
  signature = "expect_eq(actual, expected, what)", returns = "actual",
  args = { { "actual", "any?" }, { "expected", "any?" }, { "what", "string" } },
  doc = [[Passes if `actual == expected` (strings, numbers, booleans). `what` names the comparison in the report. A nil on either side fails the step (it is not a runbook error, so `--keep-going` goes on): nil is most often a misspelt or missing field, and two nils would otherwise pass. To expect that a value is absent, write `expect(x == nil, "what")`.]],
  example = [[expect_eq(dst_meta.k256_pubkey, src_meta.k256_pubkey, "dst inherited src's k256 key")]],
  fn = function(actual, expected, what)
    return steps.run("expect_eq " .. what, function(step)
      step.expected, step.actual = tostring(expected), tostring(actual)
      if expected == nil or actual == nil then
        steps.fail(expected == nil and "a non-nil expected value (nil: a missing field? use expect(x == nil, ...) for absence)"
          or tostring(expected), tostring(actual))
      end
      if actual ~= expected then steps.fail(tostring(expected), tostring(actual)) end
      return actual
    end)
  end,
}

M.expect = api.define {
  name = "expect", group = "assert",
  signature = "expect(condition, what, [actual])", returns = "condition",
  args = { { "condition", "any" }, { "what", "string" } },
  doc = [[Passes if `condition` is truthy. `what` states the expectation; `actual` (optional) is shown on failure.]],
  example = [[expect(#res.body.attestation > 0, "bootstrap returns an attestation", res.body.attestation)]],
  fn = function(cond, what, actual)
    return steps.run("expect " .. what, function(step)
      step.expected = what
      step.actual = actual ~= nil and tostring(actual) or tostring(cond)
      if not cond then steps.fail(what, step.actual) end
      return cond
    end)
  end,
}

M.deny_all = api.define {
  name = "deny_all", group = "policy",
  signature = "deny_all()", returns = "policy",
  args = {},
  doc = [[The guide's deny baseline: `osImages = []`, `kms.mrAggregated = []` (denies every KMS; auth-simple then answers `OS image is not allowed`).]],
  example = [[set_policy(auth_src, deny_all())]],
  fn = policies.deny_all,
}

M.allow = api.define {
  name = "allow", group = "policy",
  signature = "allow(kms, ...)", returns = "policy",
  args = { { "kms", "kms", variadic = true } },
  doc = [[A policy that allows these KMS instances by identity: their observed `os_image_hash` in `osImages` and `mr_aggregated` in `kms.mrAggregated` (from `capture_attestation` in this run). It is lenient elsewhere, on purpose: it also sets `kms.allowAnyDevice = true` (any device id passes; `kms.devices` is empty) and `gatewayAppId = "any"`. For a policy that pins devices or apps, build the config and name it with `policy(name, config)`.]],
  example = [[set_policy(auth_src, allow(src, dst))]],
  fn = function(...)
    local ok, p = pcall(policies.allow, ...)
    if not ok then api.usage_error(tostring(p)) end
    return p
  end,
}

M.policy = api.define {
  name = "policy", group = "policy",
  signature = "policy(name, config)", returns = "policy",
  args = { { "name", "string" }, { "config", "table" } },
  doc = [[Names a hand-built auth-simple config (`osImages`, `kms = {mrAggregated, devices, allowAnyDevice}`, `apps`, `gatewayAppId`, `allowedTcbStatuses`, `allowedAdvisoryIds`, ...) so steps and the evidence show `name`. The config is checked against auth-simple's schema: a wrong type (auth-simple would fall back to its deny-all defaults), a key auth-simple does not know (it would be ignored) or a `{description, config}` wrapper is an error at the runbook line. `set_policy(auth, config)` checks a bare config the same way.]],
  example = [[set_policy(auth_src, policy("src by device", {
  osImages = { "0x" .. src.attestation.os_image_hash },
  kms = { mrAggregated = { "0x" .. src.attestation.mr_aggregated }, devices = { "0x" .. src.attestation.device_id } },
}))]],
  fn = function(name, config)
    local ok, err = policy_check.check(config)
    if not ok then api.usage_error("policy " .. string.format("%q", name) .. ": " .. err) end
    return policies.custom(config, name)
  end,
}

M.deny_by_mr = api.define {
  name = "deny_by_mr", group = "policy",
  signature = "deny_by_mr(kms, ...)", returns = "policy",
  args = { { "kms", "kms", variadic = true } },
  doc = [[A policy that allows the observed OS images of these KMS instances but no aggregated MR (an all-zero one), so the denial reason is `aggregated MR not allowed` rather than the OS image.]],
  example = [[set_policy(auth_dst, deny_by_mr(src))]],
  fn = function(...)
    local ok, p = pcall(policies.deny_by_mr, ...)
    if not ok then api.usage_error(tostring(p)) end
    return p
  end,
}

return M
