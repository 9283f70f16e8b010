-- kmsrun side of bench/run's RPC-overhead row: N sequential KMS.GetMeta calls on one
-- keep-alive TLS connection from a task. Usage: kmsrun script bench/rpc_client.lua BASE N MODE
--   MODE prpc: kmsrun.kms.prpc.call, the client the DSL's rpc() uses (POST <BASE>/prpc/KMS.GetMeta?json,
--              body {}, JSON-decoded answer; each answer must be ok and carry k256_pubkey)
--   MODE http: the same request with kmsrun.http.request directly (status 200 checked, no decoding)
-- Prints the elapsed seconds.
local http = require "kmsrun.http"
local prpc = require "kmsrun.kms.prpc"
local time = require "kmsrun.time"

local base, n, mode = arg[1], tonumber(arg[2]), arg[3] or "prpc"
local started
if mode == "prpc" then
  started = time.now()
  for i = 1, n do
    local res, err = prpc.call(base, "KMS.GetMeta")
    if not res or not res.ok or type(res.body.k256_pubkey) ~= "string" then
      error("call " .. i .. " failed: " .. tostring(res and (res.error or res.raw) or err))
    end
  end
elseif mode == "http" then
  local url = prpc.url(base, "KMS.GetMeta")
  local opts = { method = "POST", headers = { ["Content-Type"] = "application/json" }, body = "{}",
    tls = { insecure = true } }
  started = time.now()
  for i = 1, n do
    local res, err = http.request(url, opts)
    if not res or res.status ~= 200 then error("request " .. i .. " failed: " .. tostring(res and res.body or err)) end
  end
else
  error("MODE must be prpc or http")
end
print(string.format("%.6f", time.now() - started))
