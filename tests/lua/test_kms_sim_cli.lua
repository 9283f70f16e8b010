-- `kmsrun serve kms-sim` (the KMS EMULATOR as a process): the listening lines, the switch
-- to HTTPS after /finish, exit statuses, signals, the crash fault and --leak-keys-to.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "lib/?.lua;" .. package.path

local T = require "kmsrun.lib.testing"
local F = require "kms_sim_fixture"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local http = require "kmsrun.http"
local time = require "kmsrun.time"
local toml = require "kmsrun.lib.toml"
local cjson = require "cjson.safe"

-- Writes kms.toml in a fresh directory and starts the emulator process.
local function spawn(webhook_url, extra, core)
  local dir = F.tmpdir()
  local cfg = F.config(dir .. "/certs", webhook_url, core)
  assert(fs.write(dir .. "/kms.toml", toml.encode(cfg)))
  local argv = { proc.exe(), "serve", "kms-sim", "-c", dir .. "/kms.toml", "--name", "cli" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local p = assert(proc.spawn(argv, { cwd = dir, stdout = dir .. "/out", stderr = dir .. "/err" }))
  return { p = p, dir = dir }
end

-- Waits for the n-th "listening on URL" line with the given scheme.
local function listening(c, scheme, n)
  local deadline = time.now() + 10
  while time.now() < deadline do
    local seen = 0
    for url in (fs.read(c.dir .. "/out") or ""):gmatch("listening on (" .. scheme .. "://[%d%.:]+)\n") do
      seen = seen + 1
      if seen == (n or 1) then return url end
    end
    if not c.p:running() then break end
    time.sleep(0.01)
  end
  error("no '" .. scheme .. "' listening line; stderr:\n" .. tostring(fs.read(c.dir .. "/err")))
end

local function post(url, body, tls)
  local res = assert(http.request(url, { method = "POST", body = body or "{}", tls = tls, fresh = true }))
  return res, cjson.decode(res.body)
end

T.test("onboard over HTTP, /finish, then HTTPS on the same port; SIGTERM exits 0", function()
  local a = F.auth { kms = {} }
  local leak_dir = F.tmpdir()
  local c = spawn(a.url, { "--image", "img-cli", "--leak-keys-to", leak_dir .. "/keys" })
  local url = listening(c, "http")
  local _, info = post(url .. "/prpc/Onboard.GetAttestationInfo?json")
  a:set_policy { osImages = { info.os_image_hash }, kms = { mrAggregated = { info.mr_aggregated } } }
  local res = post(url .. "/prpc/Onboard.Bootstrap?json", '{"domain":"kms.cli.test"}')
  T.eq(res.status, 200, res.body)
  T.eq(assert(http.request(url .. "/finish")).body, "OK")
  local https = listening(c, "https")
  T.eq(https, url:gsub("^http:", "https:"), "same port, now TLS")
  res = post(https .. "/prpc/KMS.GetTempCaCert?json", "{}", { insecure = true })
  T.eq(res.status, 200)
  local leaked = fs.read(leak_dir .. "/keys") or ""
  T.contains(leaked, "handed out temp_ca_key in GetTempCaCert")
  T.contains(leaked, cjson.decode(res.body).temp_ca_key)
  local err = fs.read(c.dir .. "/err")
  T.contains(err, "kms-sim (emulator) starting")
  T.match(err, "rpc POST KMS%.GetTempCaCert %-> 200 ok %(%d+ ms%)")
  c.p:signal("TERM")
  T.eq(c.p:wait(5), 0, "SIGTERM: clean exit")
  a:close()
end)

T.test("/finish before keys: exit status 1 with 'Failed to onboard'", function()
  local a = F.auth { kms = {} }
  local c = spawn(a.url)
  local url = listening(c, "http")
  T.eq(assert(http.request(url .. "/finish")).body, "OK")
  T.eq(c.p:wait(5), 1)
  T.contains(fs.read(c.dir .. "/err"), "Error: Failed to onboard")
  a:close()
end)

T.test("--fault crash=METHOD exits abruptly when the method is called", function()
  local a = F.auth { kms = {} }
  local c = spawn(a.url, { "--fault", "crash=Onboard.GetAttestationInfo", "--mutation", "skip-runtime-self-check" })
  local url = listening(c, "http")
  local res, _, code = http.request(url .. "/prpc/Onboard.GetAttestationInfo?json", { method = "POST", body = "{}", fresh = true })
  T.eq(res, nil, "no answer")
  T.ok(code, "transport failure")
  T.eq(c.p:wait(5), 1)
  local err = fs.read(c.dir .. "/err")
  T.contains(err, "WARNING: TEST-ONLY MUTATION ACTIVE: skip-runtime-self-check")
  T.contains(err, "FAULT crash=GetAttestationInfo")
  a:close()
end)

T.test("usage errors exit 2", function()
  local dir = F.tmpdir()
  local p = assert(proc.spawn({ proc.exe(), "serve", "kms-sim", "--bogus" }, { cwd = dir, stderr = dir .. "/err" }))
  T.eq(p:wait(5), 2)
  T.contains(fs.read(dir .. "/err"), "unknown option --bogus")
  p = assert(proc.spawn({ proc.exe(), "serve", "kms-sim", "-c", dir .. "/missing.toml" }, { cwd = dir, stderr = dir .. "/err2" }))
  T.eq(p:wait(5), 1)
  T.contains(fs.read(dir .. "/err2"), "failed to load config")
end)

T.test("cleanup", function() F.cleanup() end)
