-- The pieces of `kmsrun check`: the static scope walk (which names are globals),
-- and the analysis of small runbooks written on the fly (no false positive on
-- correct use of the DSL; the dry run starts nothing and continues past mistakes).
local T = require "kmsrun.lib.testing"
local scope = require "kmsrun.cli.check.scope"
local analyze = require "kmsrun.cli.check.analyze"
local plan_text = require "kmsrun.cli.check.plan_text"

local function globals(src)
  local out = {}
  for _, r in ipairs(scope.globals(src)) do
    out[#out + 1] = r.name .. (r.write and "=" or "") .. (r.field and ("." .. r.field) or "") .. "@" .. r.line
  end
  table.sort(out)
  return table.concat(out, " ")
end

-- Analyses text as a runbook file (written, analysed, removed).
local function analyse(text, opts)
  local base = os.tmpname()
  local path = base .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local a, err = analyze.run(path, opts or {})
  os.remove(path)
  os.remove(base)
  return a, err
end

local function messages(a)
  local out = {}
  for _, i in ipairs(a.issues:sorted()) do out[#out + 1] = (i.line or "?") .. ": " .. i.message end
  return out
end

local HEAD = [[
runbook { description = "t", vars = { d = { default = "x.test" } } }
local auth = auth_server("auth")
local k = kms("k", { auth = auth })
setup(function() deploy(k); wait_ready(k); capture_attestation(k) end)
]]

T.test("locals, parameters, loop variables and self are not globals", function()
  T.eq(globals("local a = 1; local function f(b, ...) return a, b, ... end; for i = 1, 2 do print(i) end"), "print@1")
  T.eq(globals("for k, v in pairs(t) do local _ = k .. v end"), "pairs@1 t@1")
  T.eq(globals("local o = {}; function o:m(x) return self, x end"), "")
end)

T.test("`local x = x` reads the outer x; repeat-until sees the body's locals", function()
  T.eq(globals("local x = x"), "x@1")
  T.eq(globals("repeat local r = 1 until r"), "")
  T.eq(globals("local f = function() return f end"), "f@1")
  T.eq(globals("local function g() return g end"), "")
end)

T.test("fields, method names, constructor keys and labels are not globals", function()
  T.eq(globals("local t = { a = 1, [b] = 2, c == 3 }; t.x = t:y(); goto done ::done::"), "b@1 c@1")
  T.eq(globals("x.y = 1; z = 2; function w() end; function q.r() end"), "q.r@1 w=@1 x.y@1 z=@1")
end)

T.test("var.X is a read of var with field X; strings and comments are skipped", function()
  T.eq(globals("local s = 'var.no' .. [[\nfoo]] -- bar\n--[==[ baz\n]==] return var.d"), "var.d@4")
end)

T.test("correct use of every DSL function has no mistake", function()
  local a = analyse((HEAD .. [[
case("one", { tags = { "t" } }, function()
  set_policy(auth, deny_by_mr(k))
  local res = rpc(k, "Onboard.Bootstrap", { domain = var.d }, { save = "b", timeout = 5 })
  expect_error(res, { contains = "not allowed" })
  step("allowed", function()
    set_policy(auth, allow(k))
    expect_ok(rpc(k, "Onboard.Bootstrap", { domain = var.d }), { "ca_pubkey" })
  end)
  finish(k)
  wait_ready(k, { timeout = 60 })
  local meta = expect_ok(rpc(k, "KMS.GetMeta"), { "k256_pubkey" })
  local a, b = parallel(function() return rpc(k, "KMS.GetMeta") end, function() return rpc(k, "KMS.GetTempCaCert") end)
  expect_eq(meta.k256_pubkey, a.body.k256_pubkey, "same key")
  expect(#meta.bootstrap_info.attestation > 0, "attested", b.body.ca_cert)
  log("key %s", meta.k256_pubkey)
  save("meta", meta)
  sleep(0)
  local s = secret("some-secret-value")
end)
case("two", { needs = { "one" } }, function()
  expect_ok(rpc(k, "KMS.GetAppKey", { api_version = 1, vm_config = "" }))
end)
teardown(function() archive() end)
]]), {})
  T.eq(messages(a), {})
  T.eq(#a.recordings, 4) -- setup, two cases, teardown
end)

T.test("a case goes on after a mistake, and the next case is checked", function()
  local a = analyse((HEAD .. [[
case("one", function()
  rpc(k, "KMS.GetMta")
  rpc(k, "Onboard.GetAttestationInfo", nil, { sav = "x" })
  set_policy("auth", deny_all())
end)
case("two", function()
  finish(k)
  finish(k)
end)
]]), {})
  T.eq(messages(a), {
    "6: rpc: unknown method 'KMS.GetMta' (did you mean 'KMS.GetMeta'?)",
    "7: rpc: unknown option 'sav' (did you mean 'save'?)",
    "8: set_policy: argument #1 (auth) must be auth, got string",
    "12: finish: k is already in runtime mode (finish was called before)",
  })
end)

T.test("a plain Lua error ends its case only", function()
  local a = analyse((HEAD .. [[
case("one", function()
  local t = nil
  return t.x
end)
case("two", function()
  rpc(k, "KMS.GetMeta")
end)
]]), {})
  T.eq(messages(a), {
    "7: error in case \"one\": attempt to index a nil value (local 't')",
    "10: rpc: k is in onboard mode: KMS.GetMeta is served only after finish(k)",
  })
end)

T.test("`require`d modules are inert in the dry run", function()
  local a = analyse((HEAD .. [[
local proc = require "kmsrun.proc"
case("spawns nothing", function()
  local p = proc.spawn({ "/bin/false" })
  p:wait()
end)
]]), {})
  -- Without host access the require is reported (it would fail at run time)...
  T.eq(messages(a), { "5: require 'kmsrun.proc' needs host access: a runbook gets the DSL and the safe standard "
    .. "libraries; declare runbook{host_access = true} or run with --host-access to use it" })
end)

T.test("with host access a required host module is still inert in the dry run", function()
  local a = analyse((HEAD:gsub("runbook {", "runbook { host_access = true,", 1) .. [[
local proc = require "kmsrun.proc"
case("spawns nothing", function()
  local p = proc.spawn({ "/bin/false" })
  p:wait()
end)
]]), {})
  T.eq(messages(a), {})
end)

T.test("the plan names each step and hides secret variables", function()
  local a = analyse([[
runbook { description = "t", vars = { tok = { default = "hunter2-very-secret", secret = true } } }
local auth = auth_server("auth")
local k = kms("k", { auth = auth })
setup(function() deploy(k); wait_ready(k) end)
case("c", function() rpc(k, "Onboard.Bootstrap", { domain = var.tok }) end)
]])
  local text = plan_text.text(a)
  T.contains(text, "5: rpc k Onboard.Bootstrap {domain=[secret var.tok]}")
  T.contains(text, "remove k from target sim")
  T.ok(not text:find("hunter2", 1, true), "the secret value is not in the plan")
end)

T.test("command-line mistakes are errors, not runbook mistakes", function()
  local text = HEAD .. "case('c', function() end)\n"
  local a, err = analyse(text, { vars = { dd = "1" } })
  T.eq(a, nil)
  T.eq(err, "unknown variable 'dd' (did you mean 'd'?)")
  a, err = analyse(text, { cases = { "nope" } })
  T.eq(err, "no case matches --case nope")
end)
