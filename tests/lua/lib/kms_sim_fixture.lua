-- Shared setup for the kms-sim (emulator) tests: in-process emulator instances, auth
-- servers (kmsrun.emu.auth.server, auth-simple compatible), a scriptable webhook, and plain
-- HTTP helpers (no DSL: these tests check the emulator itself).
local sim = require "kmsrun.emu.kms.emulator"
local auth = require "kmsrun.emu.auth.server"
local server = require "kmsrun.lib.http_server"
local http = require "kmsrun.http"
local fs = require "kmsrun.fs"
local cjson = require "cjson.safe"

local F = {}

F.dirs = {}

function F.tmpdir()
  local d = assert(fs.tmpdir("kms-sim-test"))
  F.dirs[#F.dirs + 1] = d
  return d
end

--- A kms.toml-shaped table for an instance on loopback with dynamic ports.
function F.config(dir, webhook_url, core_overrides)
  local core = {
    cert_dir = dir, site_name = "test",
    auth_api = { type = "webhook", webhook = { url = webhook_url } },
    onboard = { enabled = true, auto_bootstrap_domain = "", address = "127.0.0.1", port = 0 },
    image = { verify = false },
  }
  for k, v in pairs(core_overrides or {}) do core[k] = v end
  return {
    rpc = { address = "127.0.0.1", port = 0,
      tls = { key = dir .. "/rpc.key", certs = dir .. "/rpc.crt", mutual = { ca_certs = dir .. "/tmp-ca.crt", mandatory = false } } },
    core = core,
  }
end

--- Starts an emulator instance; its log lines are kept in h.logs (not printed).
-- opts: webhook (url), dir, core (overrides), and any sim.start option.
function F.kms(opts)
  opts = opts or {}
  local logs = {}
  local dir = opts.dir or F.tmpdir()
  local start = {}
  for k, v in pairs(opts) do if k ~= "webhook" and k ~= "dir" and k ~= "core" then start[k] = v end end
  start.config = start.config or F.config(dir, opts.webhook, opts.core)
  start.log = function(line) logs[#logs + 1] = line; if os.getenv("KMS_SIM_TEST_VERBOSE") then io.stderr:write(line, "\n") end end
  local h, err, dead = sim.start(start)
  if not h then return nil, err, dead and dead.logs or logs end
  h.logs, h.dir = logs, dir
  return h
end

--- An auth-simple compatible server with a policy table.
function F.auth(policy)
  return assert(auth.start { policy = policy or { kms = {} }, on_message = function() end })
end

--- Policies in auth-simple's shape (7.2), built from emulated identities (h.identity).
function F.allow(...)
  local p = { osImages = {}, gatewayAppId = "any", kms = { mrAggregated = {}, devices = {}, allowAnyDevice = true }, apps = {} }
  for _, h in ipairs { ... } do
    table.insert(p.osImages, "0x" .. h.identity.os_image_hash)
    table.insert(p.kms.mrAggregated, "0x" .. h.identity.mr_aggregated)
  end
  return p
end

function F.deny_by_mr(h)
  return { osImages = { "0x" .. h.identity.os_image_hash }, gatewayAppId = "any",
    kms = { mrAggregated = { "0x" .. string.rep("0", 64) }, devices = {}, allowAnyDevice = true }, apps = {} }
end

--- A scriptable webhook: respond(req) -> status, body, headers; swap it with hook.respond = fn.
function F.hook(respond)
  local hook = { calls = {} }
  hook.respond = respond or function() return 200, '{"isAllowed":true,"reason":"","gatewayAppId":"any"}' end
  hook.srv = assert(server.listen(function(req)
    hook.calls[#hook.calls + 1] = { method = req.method, path = req.path, body = req.body, headers = req.headers }
    return hook.respond(req)
  end))
  hook.url = hook.srv:url()
  function hook:close() self.srv:close() end
  return hook
end

F.INFO_OK = '{"status":"ok","kmsContractAddr":"0xkms","gatewayAppId":"gw","chainId":11155111,"appImplementation":"0ximpl"}'

--- A free TCP port with nothing listening (for "unreachable" cases).
function F.dead_port()
  local s = assert(server.listen(function() return 200, "" end))
  local port = s.port
  s:close()
  return port
end

--- One HTTP request to an instance; returns res with res.json (decoded body or nil).
function F.req(h, path, opts)
  opts = opts or {}
  local url = (opts.base or h:url()) .. path
  local tls = url:match("^https:") and (opts.tls or { insecure = true }) or nil
  local res, err, code = http.request(url, {
    method = opts.method or "POST", body = opts.body, headers = opts.headers, tls = tls, fresh = opts.fresh,
  })
  assert(res, "request to " .. url .. " failed: " .. tostring(err) .. " " .. tostring(code))
  res.json = cjson.decode(res.body)
  return res
end

--- POST /prpc/<method>?json with a body (default "{}"); returns res.
function F.rpc(h, method, body, opts)
  opts = opts or {}
  opts.body = body or "{}"
  return F.req(h, "/prpc/" .. method .. "?json", opts)
end

--- The "error" of a prpc error answer (asserting it is one).
function F.rpc_error(h, method, body, opts)
  local res = F.rpc(h, method, body, opts)
  assert(res.status == 400, "expected HTTP 400 from " .. method .. ", got " .. res.status .. ": " .. res.body)
  assert(type(res.json) == "table" and type(res.json.error) == "string", "not a prpc error body: " .. res.body)
  return res.json.error, res
end

--- Bootstraps (policy must allow) and finishes; returns the bootstrap response.
function F.bootstrap_and_finish(h, domain)
  local res = F.rpc(h, "Onboard.Bootstrap", cjson.encode { domain = domain or "kms.example.test" })
  assert(res.status == 200, "bootstrap failed: " .. res.body)
  local fin = F.req(h, "/finish", { method = "GET" })
  assert(fin.status == 200 and fin.body == "OK", "finish failed")
  assert(h:wait_mode("runtime"))
  return res.json
end

function F.cleanup()
  for _, d in ipairs(F.dirs) do fs.remove(d) end
  F.dirs = {}
end

return F
