-- prpc client: POST <base>/prpc/<Method>?json with a JSON body. The decoded
-- body is returned whatever the HTTP status: an RPC error (always a 400 with
-- {"error": "..."}) is the result a deny case needs, not an exception.
local http = require "kmsrun.http"
local json = require "kmsrun.lib.json"

local M = {}

--- The URL of a method on a base URL ("https://h:p" or ".../prpc").
function M.url(base, method)
  base = base:gsub("/+$", "")
  if not base:match("/prpc$") then base = base .. "/prpc" end
  return base .. "/" .. method .. "?json"
end

--- Calls method; returns res | nil, err, code (transport failures only).
-- res = {status, body (decoded JSON, or the raw text if not JSON), raw, error
-- (the RPC error string or nil), ok (200, a JSON body and no error), json_error
-- (why the body is not JSON, or nil), time, certs, url, method}
function M.call(base, method, body, opts)
  opts = opts or {}
  local url = M.url(base, method)
  local payload = body == nil and "{}" or (type(body) == "string" and body or json.encode(body))
  local tls
  if url:match("^https:") then tls = opts.tls or { insecure = true } end
  local res, err, code = http.request(url, {
    method = "POST",
    headers = { ["Content-Type"] = "application/json" },
    body = payload,
    timeout = opts.timeout or 30,
    tls = tls,
    fresh = opts.fresh,
  })
  if not res then return nil, err, code end
  return M.response(method, url, payload, res)
end

--- The response table of an HTTP answer {status, body, time, certs} to a call of
-- method (no I/O; tests/fuzz/fuzz_response.c feeds it arbitrary bodies).
function M.response(method, url, payload, res)
  local decoded, json_error = json.decode(res.body)
  local rpc_error
  if type(decoded) == "table" and type(decoded.error) == "string" then rpc_error = decoded.error end
  return {
    __kind = "response",
    method = method,
    url = url,
    request = payload,
    status = res.status,
    raw = res.body,
    body = decoded ~= nil and decoded or res.body,
    error = rpc_error,
    -- A 200 whose body is not JSON (garbage, truncated, empty) is not a success.
    ok = res.status == 200 and rpc_error == nil and decoded ~= nil,
    json_error = decoded == nil and (json_error or "not JSON") or nil,
    time = res.time,
    certs = res.certs,
    -- The TLS server's own certificate (runtime endpoint): its attestation, its CA.
    server_cert = res.certs and res.certs[1] or nil,
  }
end

return M
