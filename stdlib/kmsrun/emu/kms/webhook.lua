-- The KMS's auth webhook client (kms-protocol.md section 6): GET U for info, POST
-- U/bootAuth/{kms,app} with the boot info; a fresh connection and no request timeout per
-- call; error texts as the real client builds them (6.4), so chains read the same.
local http = require "kmsrun.http"
local S = require "kmsrun.lib.json_serde"
local messages = require "kmsrun.kms.messages"

local W = {}

W.USER_AGENT = "dstack-kms/0.6.0 kmsrun-kms-sim/0.1.0 (emulator)"
-- A hanging webhook hangs the RPC, as upstream (the host's upper bound is ~11 days).
local NO_TIMEOUT = 1e6

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout",
  [409] = "Conflict", [410] = "Gone", [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [418] = "I'm a teapot", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

--- "<code> <reason>" as Rust's http::StatusCode displays it.
function W.status_text(code)
  return string.format("%d %s", code, REASONS[code] or "<unknown status code>")
end

--- The URL as reqwest prints it (lowercase scheme/host, default port dropped, path "/" at least).
function W.display_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return url end
  scheme = scheme:lower()
  local authority, tail = rest:match("^([^/?#]*)(.*)$")
  local host, port = authority:match("^(.*):(%d+)$")
  if not host then host = authority end
  host = host:lower()
  if (scheme == "http" and port == "80") or (scheme == "https" and port == "443") then port = nil end
  if tail == "" or tail:sub(1, 1) ~= "/" then tail = "/" .. tail end
  return scheme .. "://" .. host .. (port and (":" .. port) or "") .. tail
end

--- The transport failure text of reqwest/hyper for a host error code (6.4; prefixes stable).
function W.transport_error(url, msg, code)
  local tails = {
    ECONNREFUSED = "client error (Connect): tcp connect error: Connection refused (os error 111)",
    ETIMEDOUT = "client error (Connect): tcp connect error: Connection timed out (os error 110)",
    ERESOLVE = "client error (Connect): dns error: failed to lookup address information: Name or service not known",
    ECONNRESET = "client error (SendRequest): connection closed before message completed",
    ETLS = "client error (Connect): " .. tostring(msg),
  }
  return "error sending request for url (" .. W.display_url(url) .. "): " .. (tails[code] or ("client error: " .. tostring(msg)))
end

local Client = {}
Client.__index = Client

--- A client for cfg.core.auth_api. opts.rewrite(url) -> url maps hosts (--host-alias).
function W.new(cfg, opts)
  opts = opts or {}
  local api = cfg.core.auth_api
  return setmetatable({
    type = api.type, url = api.webhook.url, dev_gateway_app_id = api.dev and api.dev.gateway_app_id or "any",
    rewrite = opts.rewrite or function(u) return u end,
  }, Client)
end

function Client:is_dev() return self.type == "dev" end

-- One request; returns the decoded schema value or nil, 6.4 text.
function Client:send(method, url, body, schema)
  local res, err, code = http.request(self.rewrite(url), {
    method = method,
    headers = body and { ["Content-Type"] = "application/json", ["User-Agent"] = W.USER_AGENT }
      or { ["User-Agent"] = W.USER_AGENT },
    body = body, timeout = NO_TIMEOUT, fresh = true,
  })
  if not res then return nil, W.transport_error(url, err, code) end
  local short = res.body:sub(1, 512)
  if res.status < 200 or res.status > 299 then
    return nil, string.format("auth api %s returned %s: %s", url, W.status_text(res.status), short)
  end
  local v, derr = S.decode(res.body, schema)
  if not v then
    return nil, string.format("failed to decode response from %s, status=%s, body=%s: %s", url,
      W.status_text(res.status), short, derr)
  end
  return v
end

--- Info (6.1): { is_dev, gateway_app_id, kms_contract_address, eth_rpc_url, chain_id,
-- app_implementation } (absent values nil) or nil, error.
function Client:info()
  if self:is_dev() then return { is_dev = true, gateway_app_id = self.dev_gateway_app_id } end
  local v, err = self:send("GET", self.url, nil, messages.AuthApiInfoResponse)
  if not v then return nil, err end
  return {
    is_dev = false, kms_contract_address = v.kmsContractAddr, gateway_app_id = v.gatewayAppId,
    eth_rpc_url = v.ethRpcUrl ~= "" and v.ethRpcUrl or nil, chain_id = v.chainId,
    app_implementation = v.appImplementation,
  }
end

--- Boot authorization (6.2/6.3) of a boot info JSON text: { is_allowed, reason,
-- gateway_app_id } or nil, error.
function Client:boot_auth(boot_info_json, is_kms)
  if self:is_dev() then return { is_allowed = true, reason = "", gateway_app_id = self.dev_gateway_app_id } end
  local url = self.url
  if url:sub(-1) ~= "/" then url = url .. "/" end
  url = url .. (is_kms and "bootAuth/kms" or "bootAuth/app")
  local v, err = self:send("POST", url, boot_info_json, messages.BootResponse)
  if not v then return nil, err end
  return { is_allowed = v.isAllowed, reason = v.reason, gateway_app_id = v.gatewayAppId }
end

return W
