-- A client for the dstack-vmm prpc JSON API (kms-protocol.md 10): POST
-- <base>/prpc/<Method>?json over HTTP(S) or a Unix socket, plus GET /logs.
-- Credentials go into one Authorization header and are tainted for the
-- redactor the moment the client is built, so no sink can print them.
local http = require "kmsrun.http"
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local redact = require "kmsrun.report.redact"

local M = {}
local Client = {}
Client.__index = Client

--- Where credentials come from, for error messages.
M.CREDENTIAL_HINT = "set DSTACK_VMM_TOKEN (or --var vmm_token=...) for a bearer token, or "
  .. "DSTACK_VMM_AUTH_USER and DSTACK_VMM_AUTH_PASSWORD (or --var vmm_auth_user=... --var vmm_auth_password=...)"

--- Parses a VMM address: http://host:port[/prefix], https://..., unix:/path
-- (a relative unix path is taken from the current directory). Returns
-- {base =, unix_socket =, display =} or nil, err.
function M.parse_url(url)
  if type(url) ~= "string" or url == "" then
    return nil, "no VMM address: give --var vmm_url=http://HOST:PORT (or https://..., unix:/path/vmm.sock) "
      .. "or set DSTACK_VMM_URL"
  end
  local path = url:match("^unix:(.+)$")
  if path then
    if path:sub(1, 1) ~= "/" then path = fs.cwd() .. "/" .. path:gsub("^%./", "") end
    -- Over a socket the host part of the URL is only the Host header.
    return { base = "http://localhost", unix_socket = path, display = "unix:" .. path }
  end
  local scheme, rest = url:match("^(https?)://(.+)$")
  if not scheme then
    return nil, string.format("VMM address '%s' must start with http://, https:// or unix:", url)
  end
  if rest:find("@", 1, true) then
    -- user:pass@host would put a credential in every URL we print.
    return nil, "VMM address must not carry credentials (user:password@host); use the credential variables: "
      .. M.CREDENTIAL_HINT
  end
  local base = (scheme .. "://" .. rest):gsub("/+$", "")
  return { base = base, display = base }
end

--- The Authorization header value for the credentials, or nil. A bearer token
-- wins when both are given, as the VMM itself decides (10.1).
function M.authorization(creds)
  creds = creds or {}
  local token, user, password = creds.token, creds.user, creds.password
  if token == "" then token = nil end
  if user == "" then user = nil end
  if password == "" then password = nil end
  if token then
    redact.add(token)
    local header = "Bearer " .. token
    redact.add(header)
    return header
  end
  if user or password then
    if not (user and password) then
      return nil, "Basic authentication needs both a user and a password: " .. M.CREDENTIAL_HINT
    end
    redact.add(password)
    redact.add(user)
    local pair = user .. ":" .. password
    redact.add(pair)
    local header = "Basic " .. crypto.base64(pair)
    redact.add(header)
    return header
  end
  return nil
end

--- Builds a client. creds: {token =, user =, password =}; opts: {timeout =, tls = {...}}.
function M.new(url, creds, opts)
  opts = opts or {}
  local where, err = M.parse_url(url)
  if not where then return nil, err end
  local auth, aerr = M.authorization(creds)
  if aerr then return nil, aerr end
  local kind
  if auth then
    kind = auth:match("^Bearer ") and "bearer token (vmm_token / DSTACK_VMM_TOKEN)"
      or "user and password (vmm_auth_user, vmm_auth_password / DSTACK_VMM_AUTH_USER, DSTACK_VMM_AUTH_PASSWORD)"
  end
  return setmetatable({
    base = where.base, unix_socket = where.unix_socket, display = where.display,
    auth = auth, auth_kind = kind, timeout = opts.timeout or 60, tls = opts.tls,
  }, Client)
end

function Client:__tostring()
  return "VMM " .. self.display
end

local function request(self, path, req)
  local headers = req.headers or {}
  if self.auth then headers["Authorization"] = self.auth end
  local url = self.base .. path
  local ropts = {
    method = req.method, headers = headers, body = req.body,
    timeout = req.timeout or self.timeout, unix_socket = self.unix_socket,
  }
  if url:match("^https:") and self.tls then ropts.tls = self.tls end
  local res, err, code = http.request(url, ropts)
  if not res then
    return nil, string.format("cannot reach the VMM at %s: %s", self.display, tostring(err)), code
  end
  if res.status == 401 then
    return nil, string.format("the VMM at %s refused the request (HTTP 401): %s", self.display,
      self.auth_kind and ("the " .. self.auth_kind .. " was not accepted; check it")
        or ("it requires authentication: " .. M.CREDENTIAL_HINT)),
      "EAUTH"
  end
  return res
end

--- Calls a prpc method with a JSON body (a table, or nil for {}). Returns the
-- decoded result (true for a `null` result) or nil, err, code: "EVMM" for an
-- RPC error (err is the VMM's own error text, prefixed with the method),
-- "EAUTH" for 401, transport codes otherwise.
function Client:call(method, body, opts)
  opts = opts or {}
  local payload = body == nil and "{}" or json.encode(body)
  local res, err, code = request(self, "/prpc/" .. method .. "?json", {
    method = "POST", headers = { ["Content-Type"] = "application/json" }, body = payload, timeout = opts.timeout,
  })
  if not res then return nil, err, code end
  local decoded = json.decode(res.body)
  if res.status ~= 200 then
    local msg = type(decoded) == "table" and type(decoded.error) == "string" and decoded.error
      or string.format("HTTP %d %s", res.status, res.body:sub(1, 300))
    return nil, string.format("VMM %s: %s", method, msg), res.status == 400 and "EVMM" or "EHTTP"
  end
  if decoded == nil then
    if res.body == "" then return true end
    return nil, string.format("VMM %s: the answer is not JSON: %s", method, res.body:sub(1, 200)), "EPROTO"
  end
  if decoded == json.null then return true end
  return decoded
end

--- The tail of a VM's log (serial console by default; opts.channel =
-- "stdout"|"stderr" for QEMU's). Returns the text or nil, err, code.
function Client:logs(id, opts)
  opts = opts or {}
  local path = string.format("/logs?id=%s&follow=false&ansi=false&lines=%d", id, opts.lines or 1000)
  if opts.channel then path = path .. "&ch=" .. opts.channel end
  local res, err, code = request(self, path, { method = "GET", timeout = opts.timeout })
  if not res then return nil, err, code end
  if res.status ~= 200 then
    return nil, string.format("VMM logs of %s: HTTP %d %s", id, res.status, res.body:sub(1, 200)), "EHTTP"
  end
  return res.body
end

return M
