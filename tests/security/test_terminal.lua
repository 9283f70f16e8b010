-- The terminal as a redacted sink (issue 12, point 1), the repro as the test: a
-- secret default is not shown by --help; a secret in an error the host writes from
-- C is scrubbed; the `--events -` stream on stdout has no form of a secret and
-- stays valid JSON when the secret is JSON syntax; a VMM token's upper-case and
-- base64url forms are scrubbed; a log file that cannot be opened is named as such.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"
local proc = require "kmsrun.proc"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

T.test("--help does not show a secret default; plan hides it too", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/rb.lua", 'runbook { description = "d", vars = {\n'
    .. '  tok = { default = "default-s3cr3t-token", secret = true, help = "a token" },\n'
    .. '  plain = { default = "shown-default", help = "not secret" } } }\n'
    .. 'case("c", function() log("%s", var.tok) end)\n'))
  local r = kit.kmsrun(dir, { dir .. "/rb.lua", "--help" })
  T.eq(r.code, 0, r.stderr)
  T.contains(r.stdout, "[default: [secret]]")
  T.contains(r.stdout, "[default: shown-default]")
  T.ok(not (r.stdout .. r.stderr):find("s3cr3t", 1, true), r.stdout)
  r = kit.kmsrun(dir, { "plan", dir .. "/rb.lua" })
  T.ok(not (r.stdout .. r.stderr):find("s3cr3t", 1, true), "plan: " .. r.stdout)
  -- The default is a secret of the run as well.
  r = kit.kmsrun(dir, { dir .. "/rb.lua", "--out", dir .. "/out" })
  T.eq(r.code, 0, r.stderr)
  T.ok(not (r.stdout .. r.stderr .. fs.read(dir .. "/out/report.json")):find("s3cr3t", 1, true), "run: " .. r.stdout)
  fs.remove(dir)
end)

T.test("an error the host writes (httpd handler, in C) passes the scrubber", function()
  local dir = kit.tmpdir()
  local secret = "tok-" .. crypto.hex(crypto.random(12))
  local r = kit.kmsrun(dir, { "script", kit.here .. "/host_error.lua", secret })
  T.contains(r.stdout, "done")
  T.contains(r.stderr, "httpd on_request failed: boom [REDACTED sha256:", r.stderr)
  T.ok(not r.stderr:find(secret, 1, true), r.stderr)
  fs.remove(dir)
end)

T.test("--events -: no form of a secret on stdout, every line valid JSON even for a JSON-syntax secret", function()
  local dir = kit.tmpdir()
  assert(fs.write(dir .. "/rb.lua", 'runbook { description = "d", vars = {\n'
    .. '  a = { required = true, secret = true }, b = { required = true, secret = true } } }\n'
    .. 'case("c", function() log("%s and %s", var.a, var.b) step(var.b, function() end) error(var.a .. var.b) end)\n'))
  local key = crypto.keygen()
  local r = kit.kmsrun(dir, { dir .. "/rb.lua", "--out", dir .. "/out", "--events", "-",
    "--var", "a=" .. key, "--var", 'b="status"' })
  T.eq(r.code, 2, r.stderr)
  local n = 0
  for line in r.stdout:gmatch("[^\n]+") do
    n = n + 1
    T.ok(json.decode(line), "valid JSON: " .. line:sub(1, 200))
  end
  T.ok(n > 4, n .. " events")
  local joined = key:gsub("\n", "")
  for _, form in ipairs({ key, joined, key:match("\n(.-)\n"), crypto.hex(crypto.key_info(key).private_raw) }) do
    T.ok(not (r.stdout .. r.stderr):find(form, 1, true), "no form of the key: " .. form:sub(1, 40))
  end
  T.ok(not r.stdout:find('"\\"status\\""', 1, true), "the JSON-syntax secret is not in the stream")
  fs.remove(dir)
end)

T.test("a VMM token: upper case, base64url, base64 and hex forms are scrubbed", function()
  local client = require "kmsrun.targets.vmm.client"
  local redact = require "kmsrun.report.redact"
  local token = "vmm_" .. crypto.hex(crypto.random(9)) .. "+/x?"
  assert(client.authorization({ token = token }))
  local b64u = crypto.base64(token):gsub("+", "-"):gsub("/", "_"):gsub("=+$", "")
  for name, form in pairs({ raw = token, upper = token:upper(), base64 = crypto.base64(token), base64url = b64u,
      hex = crypto.hex(token), HEX = crypto.hex(token):upper(), header = "Bearer " .. token }) do
    T.ok(not redact.scrub("<" .. form .. ">"):find(form, 1, true), name .. " scrubbed")
    T.ok(redact.find_leak("x" .. form .. "x"), name .. " found by the leak scan")
  end
end)

T.test("a child's log file that cannot be opened is named, not 'cannot execute'", function()
  local p, err, code = proc.spawn({ "true" }, { stdout = "/nonexistent-dir/child.log" })
  T.eq(p, nil)
  T.eq(code, "ESPAWN")
  T.contains(err, "cannot open '/nonexistent-dir/child.log' for the output of 'true'")
  T.ok(not err:find("cannot execute", 1, true), err)
end)
