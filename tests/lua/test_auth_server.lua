-- The auth server over real HTTP on loopback (port 0): hot reload, set_policy,
-- the decision log, robustness against bad requests, and `kmsrun serve auth`.
local T = require "kmsrun.lib.testing"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json_js"
local policy = require "kmsrun.emu.auth.policy"
local auth = require "kmsrun.emu.auth.server"

local dir = assert(fs.tmpdir("kmsrun-test-auth"))
local DATA = (os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/data/auth-simple-responses.json"

local MR, OS, DEV = ("2b"):rep(32), ("1a"):rep(32), ("3c"):rep(32)
local APP, CH = ("5e"):rep(20), ("6f"):rep(32)
local BOOT = json.encode(json.ordered("teeVariant", "dstack-tdx", "mrAggregated", MR, "osImageHash", OS,
  "mrSystem", ("77"):rep(32), "appId", APP, "composeHash", CH, "instanceId", "", "deviceId", DEV,
  "keyProviderInfo", "", "tcbStatus", "UpToDate", "advisoryIds", json.array()))
local ALLOW_KMS = { gatewayAppId = "gw", osImages = { OS }, kms = { mrAggregated = { MR } } }
local ALLOWED = '{"isAllowed":true,"reason":"","gatewayAppId":"gw"}'

local function start(opts)
  local srv, err, code = auth.start(opts)
  if not srv then error(string.format("auth.start failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return srv
end

local function request(url, opts)
  local res, err, code = http.request(url, opts)
  if not res then error(string.format("request failed: %s (%s)", tostring(err), tostring(code)), 2) end
  return res
end

local function post(srv, path, body, content_type)
  return request(srv.url .. path, { method = "POST", body = body, timeout = 10,
    headers = { ["Content-Type"] = content_type or "application/json" } })
end

local function messages()
  local list = {}
  return list, function(line) list[#list + 1] = line end
end

local function sha256_hex(s) return crypto.hex(crypto.sha256(s)) end

T.test("in-memory policy: info, decisions, set_policy live on the next request", function()
  local srv <close> = start({ policy = { osImages = {}, gatewayAppId = "any" } })
  T.match(srv.url, "^http://127%.0%.0%.1:%d+$")
  T.eq(srv.url, "http://127.0.0.1:" .. srv.port)
  local info = request(srv.url .. "/")
  T.eq(info.status, 200)
  T.eq(info.headers["content-type"], "application/json")
  T.eq(info.body, '{"status":"ok","kmsContractAddr":"0x0000000000000000000000000000000000000000","gatewayAppId":"any",' ..
    '"chainId":0,"appAuthImplementation":"0x0000000000000000000000000000000000000000",' ..
    '"appImplementation":"0x0000000000000000000000000000000000000000"}')
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":"any"}')

  local version, sha = srv:set_policy(ALLOW_KMS)
  T.eq(version, 1)
  T.eq(sha, sha256_hex(policy.canonical(ALLOW_KMS)))
  T.eq(srv:policy_hash(), sha)
  T.eq(srv:policy_text(), policy.canonical(ALLOW_KMS))
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, ALLOWED)
  T.eq(post(srv, "/bootAuth/app", BOOT).body, '{"isAllowed":false,"reason":"app not registered","gatewayAppId":"gw"}')

  T.eq(srv:set_policy({ osImages = { OS } }), 2)
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"aggregated MR not allowed","gatewayAppId":""}')
  local p = srv:policy()
  T.eq(p.osImages, { OS })
  T.eq(p.allowedTcbStatuses, { "UpToDate" }, "defaults filled in")
end)

T.test("file-backed: every request re-reads the file (hot reload)", function()
  local path = dir .. "/hot.json"
  local log, on_message = messages()
  local srv <close> = start({ config_path = path, on_message = on_message })

  -- Absent file: defaults and auth-simple's log line.
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":""}')
  T.eq(log[#log], "config file not found: " .. path)

  assert(fs.write(path, json.encode(ALLOW_KMS)))
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, ALLOWED, "the new file is live at once")

  assert(fs.write(path, '{"osImages":["' .. OS .. '"],"kms":{"mrAggregated":[]},"gatewayAppId":"gw"}'))
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"aggregated MR not allowed","gatewayAppId":"gw"}')

  -- One bad field or broken JSON: the whole policy becomes the (denying) defaults.
  local n = #log
  assert(fs.write(path, '{"osImages":["' .. OS .. '"],"kms":{"mrAggregated":["' .. MR .. '"]},"chainId":"1"}'))
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":""}')
  T.eq(log[n + 1], "failed to load config: ZodError: chainId: Expected number, received string")
  assert(fs.write(path, "{"))
  T.eq(request(srv.url .. "/").status, 200)
  T.match(log[#log], "^failed to load config: invalid JSON")
  local p, why = srv:policy()
  T.eq(p.osImages, {})
  T.match(why, "^failed to load config")

  -- A directory where the file should be is unreadable, not absent.
  fs.remove(path)
  assert(fs.mkdir(path))
  T.eq(post(srv, "/bootAuth/kms", BOOT).status, 200)
  T.match(log[#log], "^failed to load config: ")
  fs.remove(path)
end)

T.test("file-backed set_policy writes canonical JSON atomically", function()
  local sub = dir .. "/atomic"
  assert(fs.mkdir(sub))
  local path = sub .. "/auth-config.json"
  local log, on_message = messages()
  local srv <close> = start({ config_path = path, policy = { osImages = {} }, on_message = on_message })
  T.eq(fs.read(path), '{"osImages":[]}', "the initial policy is written")
  local version, sha = srv:set_policy(ALLOW_KMS)
  T.eq(version, 1)
  local text = fs.read(path)
  T.eq(text, policy.canonical(ALLOW_KMS))
  T.eq(sha, sha256_hex(text))
  T.eq(srv:policy_hash(), sha)
  T.eq(srv:policy_text(), text)
  T.eq(fs.list(sub), { "auth-config.json" }, "no temporary file left behind")
  T.eq(fs.stat(path).mode, 420, "readable by an auth-simple running as another user")
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, ALLOWED)

  -- JSON text is written verbatim, even broken (to test the fallback).
  local v2, sha2 = srv:set_policy("{broken")
  T.eq(v2, 2)
  T.eq(sha2, sha256_hex("{broken"))
  T.eq(fs.read(path), "{broken")
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":""}')
  T.eq(log, { "failed to load config: invalid JSON at byte 2: expected a string key" })
end)

T.test("policies built with kmsrun.lib.json markers keep their arrays and objects", function()
  local kj = require "kmsrun.lib.json"
  local srv <close> = start({})
  local p = kj.ordered({ "osImages", kj.array({ OS }), "gatewayAppId", "any",
    "kms", kj.ordered({ "mrAggregated", kj.array(), "devices", kj.array(), "allowAnyDevice", true }),
    "apps", kj.ordered({}) })
  local _, sha = srv:set_policy(p)
  local text = '{"apps":{},"gatewayAppId":"any","kms":{"allowAnyDevice":true,"devices":[],"mrAggregated":[]},' ..
    '"osImages":["' .. OS .. '"]}'
  T.eq(sha, sha256_hex(text))
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"aggregated MR not allowed","gatewayAppId":"any"}')
end)

T.test("decision log: in memory and as JSON lines", function()
  local log_path = dir .. "/decisions.ndjson"
  local seen = {}
  local srv <close> = start({ policy = ALLOW_KMS, log_path = log_path, on_decision = function(e) seen[#seen + 1] = e end })
  post(srv, "/bootAuth/kms", BOOT)
  post(srv, "/bootAuth/app", BOOT)
  post(srv, "/bootAuth/kms", "{")
  post(srv, "/bootAuth/kms", "{}")
  request(srv.url .. "/")                      -- info and 404s are not decisions
  request(srv.url .. "/bootAuth/kms")
  local d = srv:decisions()
  T.eq(#d, 4)
  T.eq(#seen, 4)
  T.eq({ d[1].seq, d[1].path, d[1].status, d[1].decision, d[1].reason }, { 1, "/bootAuth/kms", 200, "allow", "" })
  T.eq({ d[1].mrAggregated, d[1].osImageHash, d[1].deviceId, d[1].appId, d[1].composeHash, d[1].tcbStatus },
    { MR, OS, DEV, APP, CH, "UpToDate" })
  T.eq(d[1].policy_version, 0)
  T.eq(d[1].policy_sha256, sha256_hex(policy.canonical(ALLOW_KMS)))
  T.match(d[1].time, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
  T.eq({ d[2].decision, d[2].reason }, { "deny", "app not registered" })
  T.eq({ d[3].status, d[3].decision, d[3].reason }, { 400, "invalid", "Malformed JSON in request body" })
  T.eq(d[3].policy_sha256, nil, "invalid requests never read the policy")
  T.eq(d[4].reason, "invalid request: mrAggregated: Required; osImageHash: Required; appId: Required; " ..
    "composeHash: Required; instanceId: Required; deviceId: Required")

  local lines = {}
  for line in fs.read(log_path):gmatch("[^\n]+") do lines[#lines + 1] = line end
  T.eq(#lines, 4)
  for i, line in ipairs(lines) do
    T.eq(line, json.encode(d[i]), "line " .. i)
  end
  T.match(lines[1], '^{"seq":1,"time":"[^"]+","path":"/bootAuth/kms","status":200,"decision":"allow","reason":"",' ..
    '"mrAggregated":')

  -- set_policy changes the recorded version; decisions() hands out copies.
  srv:set_policy({ osImages = { OS } })
  post(srv, "/bootAuth/kms", BOOT)
  d = srv:decisions()
  T.eq({ d[5].policy_version, d[5].reason }, { 1, "aggregated MR not allowed" })
  d[5].reason = "changed"
  T.eq(srv:decisions()[5].reason, "aggregated MR not allowed")
end)

T.test("file edited behind the server: decisions show the hash, not a stale version", function()
  local path = dir .. "/edited.json"
  local srv <close> = start({ config_path = path, policy = ALLOW_KMS })
  post(srv, "/bootAuth/kms", BOOT)
  assert(fs.write(path, "{}"))
  post(srv, "/bootAuth/kms", BOOT)
  local d = srv:decisions()
  T.eq(d[1].policy_version, 0)
  T.eq(d[2].policy_version, nil)
  T.eq(d[2].policy_sha256, sha256_hex("{}"))
end)

T.test("bad requests never break the server", function()
  local srv <close> = start({ policy = ALLOW_KMS })
  local bodies = { "{", "", "[]", "null", '{"advisoryIds":{}}', string.rep("[", 100000), string.rep("x", 1 << 20),
    '{"mrAggregated":' .. string.rep("[", 5000) .. string.rep("]", 5000) .. "}", "\0\1\2" }
  for _, b in ipairs(bodies) do
    local res = post(srv, "/bootAuth/kms", b)
    T.eq(res.status, 400, b:sub(1, 20))
  end
  T.eq(post(srv, "/bootAuth/kms", BOOT, "text/plain").status, 400)
  local res = request(srv.url .. "/bootAuth/kms", { method = "GET" })
  T.eq({ res.status, res.body }, { 404, "404 Not Found" })
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, ALLOWED, "a good request after all that")
end)

T.test("concurrent requests and a policy flip", function()
  local srv <close> = start({ policy = ALLOW_KMS })
  local fns = {}
  for i = 1, 20 do fns[i] = function() return post(srv, i % 2 == 0 and "/bootAuth/kms" or "/bootAuth/app", BOOT).status end end
  local results = { task.parallel(table.unpack(fns)) }
  for i = 1, 20 do T.eq(results[i], 200) end
  srv:set_policy({})
  T.eq(post(srv, "/bootAuth/kms", BOOT).body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":""}')
end)

T.test("the recorded auth-simple responses, over HTTP, file-backed", function()
  local recorded = assert(json.decode(fs.read(DATA)))
  local path = dir .. "/replay.json"
  local srv <close> = start({ config_path = path, on_message = function() end })
  for i, c in ipairs(recorded.cases) do
    if c.config == json.null then fs.remove(path) else assert(fs.write(path, json.encode(c.config))) end
    local res
    if c.request == json.null then
      res = request(srv.url .. c.path, { method = c.method })
    else
      res = post(srv, c.path, json.encode(c.request))
    end
    T.eq(res.status, c.status, "case " .. i)
    T.eq(res.body, json.encode(c.response), "case " .. i)
  end
end)

T.test("start: misuse raises, a busy port is returned", function()
  T.raises(function() auth.start({ prot = 1 }) end, "auth.server.start: unknown option 'prot'")
  T.raises(function() auth.start({ port = "x" }) end, "option 'port' must be a number")
  T.raises(function() auth.start({ policy = { osImages = { print } } }) end, "auth.server.start: cannot encode a function")
  local a <close> = start({})
  local b, err, code = auth.start({ port = a.port })
  T.eq(b, nil)
  T.ok(err, "an error message")
  T.eq(code, "EADDRINUSE")
  a:close()
  a:close()
  T.match(tostring(a), "%(closed%)$")
  T.raises(function() a:set_policy({}) end, "auth_server:set_policy: the server is closed")
end)

-- The standalone command -------------------------------------------------------------

local KMSRUN = os.getenv("KMSRUN") or proc.exe()

local function wait_listening(out, p)
  local deadline = time.now() + 15
  while time.now() < deadline do
    local text = fs.read(out)
    local url = text and text:match("listening on (http://[^\n]+)\n")
    if url then return url end
    if not p:running() then error("kmsrun serve auth exited early: " .. tostring(text), 2) end
    time.sleep(0.05)
  end
  error("kmsrun serve auth did not report its port", 2)
end

T.test("kmsrun serve auth: flags, hot reload, decision log, SIGTERM", function()
  local cfg, out, err, log = dir .. "/serve.json", dir .. "/serve.out", dir .. "/serve.err", dir .. "/serve.ndjson"
  assert(fs.write(cfg, json.encode(ALLOW_KMS)))
  local p = assert(proc.spawn({ KMSRUN, "serve", "auth", "--config", cfg, "--port", "0", "--log", log },
    { stdout = out, stderr = err }))
  local url = wait_listening(out, p)
  T.match(url, "^http://127%.0%.0%.1:%d+$")
  local res = request(url .. "/bootAuth/kms", { method = "POST", body = BOOT, headers = { ["Content-Type"] = "application/json" } })
  T.eq(res.body, ALLOWED)
  assert(fs.write(cfg, "{}"))
  res = request(url .. "/bootAuth/kms", { method = "POST", body = BOOT, headers = { ["Content-Type"] = "application/json" } })
  T.eq(res.body, '{"isAllowed":false,"reason":"OS image is not allowed","gatewayAppId":""}')
  T.eq(p:signal("TERM"), true)
  local code = p:wait(10)
  T.eq(code, 0, "a clean exit on SIGTERM")
  T.eq(fs.read(out), "listening on " .. url .. "\n", "stdout holds just the listening line")
  local n = 0
  for line in fs.read(log):gmatch("[^\n]+") do n = n + 1; T.ok(json.decode(line), line) end
  T.eq(n, 2)
  T.contains(fs.read(err), "OS image is not allowed")
end)

T.test("kmsrun serve auth: AUTH_CONFIG_PATH and PORT from the environment, SIGINT", function()
  local cfg, out = dir .. "/env.json", dir .. "/env.out"
  assert(fs.write(cfg, json.encode({ gatewayAppId = "from-env" })))
  local p = assert(proc.spawn({ KMSRUN, "serve", "auth" },
    { env = { AUTH_CONFIG_PATH = cfg, PORT = "0" }, stdout = out, stderr = dir .. "/env.err" }))
  local url = wait_listening(out, p)
  T.match(request(url .. "/").body, '"gatewayAppId":"from%-env"')
  p:signal("INT")
  T.eq(p:wait(10), 0)

  -- Flags win over the environment; a missing file is only a log line.
  local out2 = dir .. "/env2.out"
  local p2 = assert(proc.spawn({ KMSRUN, "serve", "auth", "--config", dir .. "/absent.json", "--port", "0" },
    { env = { AUTH_CONFIG_PATH = cfg, PORT = "1" }, stdout = out2, stderr = dir .. "/env2.err" }))
  local url2 = wait_listening(out2, p2)
  T.match(request(url2 .. "/").body, '"gatewayAppId":""')
  p2:signal("TERM")
  T.eq(p2:wait(10), 0)
  T.contains(fs.read(dir .. "/env2.err"), "config file not found: " .. dir .. "/absent.json")
end)

T.test("kmsrun serve auth: usage errors", function()
  local out = dir .. "/usage.out"
  local p = assert(proc.spawn({ KMSRUN, "serve", "auth", "--bogus" }, { stdout = out, stderr = out }))
  T.eq(p:wait(10), 2)
  T.contains(fs.read(out), "unknown option --bogus")
  local p2 = assert(proc.spawn({ KMSRUN, "serve", "auth", "--port", "http" }, { stdout = out, stderr = out }))
  T.eq(p2:wait(10), 2)
end)
