-- Attested callers: `app` (an app identity to attest), `attested_client` (an RA-TLS client
-- certificate the KMS under test accepts, built by the target from its attestation source),
-- `cert_request` (a signed SignCert request), `allow_apps` (a policy that also lets apps
-- boot) and `expect_cert_chain` (a SignCert answer checked against the KMS CA).
-- The runbook never writes an attestation: the target makes it (sim: the emulator's
-- identity; local: the simulator's Attest; vmm: not available, needs an app CVM).
local api = require "kmsrun.dsl.api"
local steps = require "kmsrun.dsl.steps"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local W = require "kmsrun.lib.json_writer"
local policies = require "kmsrun.kms.policies"

local M = {}

local action_context = require "kmsrun.dsl.action_context"
local function run() return action_context.run("attested_client, cert_request and expect_cert_chain") end

local IDENTITY_FIELDS = { "app_id", "compose_hash", "instance_id", "device_id", "os_image_hash", "mr_aggregated",
  "mr_system", "tcb_status" }

M.app = api.define {
  name = "app", group = "declare",
  signature = "app(name, [opts])", returns = "app",
  args = { { "name", "string" }, { "opts", "table?", options = { compose = true, image = true, device = true,
    tcb_status = true, advisories = true } } },
  doc = [[Describes an app whose attestation `attested_client` and `cert_request` present (nothing is deployed). On sim: `opts.compose` (the compose text; its SHA-256 is the compose hash, its first 20 bytes the app id; default the name), `opts.image` (OS image name, default `var.sim_image`), `opts.device` (device label: different labels are different machines), `opts.tcb_status` (default `UpToDate`), `opts.advisories` (list of advisory ids). Each `app` is one app instance: its instance id stays the same for the whole run. On local the identity is the simulator's fixture and these options are ignored.]],
  example = [[local wallet = app("wallet", { compose = "services: {wallet: {image: wallet:1}}" })]],
  fn = function(name, opts)
    opts = opts or {}
    for _, k in ipairs { "compose", "image", "device", "tcb_status" } do
      if opts[k] ~= nil and type(opts[k]) ~= "string" then api.usage_error("app: opts." .. k .. " must be a string") end
    end
    if opts.advisories ~= nil and type(opts.advisories) ~= "table" then api.usage_error("app: opts.advisories must be a list of strings") end
    return { __kind = "app", name = name, spec = opts, declared_at = api.runbook_location() }
  end,
}

-- The target's attester for a KMS or app handle, or a step failure saying why not.
local function attester(r, of, what)
  if type(of) ~= "table" or (of.__kind ~= "kms" and of.__kind ~= "app") then
    api.usage_error(what .. ": the first argument must be a kms handle or an app(...)")
  end
  if not r.target.attester then
    steps.fail(what .. " on the " .. r.target.name .. " target",
      "not available on this target" .. (r.target.attester_note and (": " .. r.target.attester_note) or ""), nil, "INFRA")
  end
  if of.__kind == "kms" and not of.deployed then
    api.usage_error(string.format("%s: %s is not deployed yet (call deploy(%s) first)", what, of.name, of.name))
  end
  local a, err = r.target.attester(r.target_ctx, of)
  if not a then steps.fail(what .. " for " .. of.name, tostring(err)) end
  return a
end

-- The RA-TLS certificate of client c for KMS k, signed by k's temp CA (fetched with
-- KMS.GetTempCaCert, as a CVM does first); one per KMS, kept on the client.
local function issue_for(c, r, k)
  c.issued = c.issued or {}
  if c.issued[k.name] then return c.issued[k.name] end
  local res = r:rpc(k, "KMS.GetTempCaCert", nil, {})
  if not res.ok then
    steps.fail("the temp CA of " .. k.name, string.format("HTTP %d %s", res.status, tostring(res.error)))
  end
  local pair, err = c.attester:client_cert(res.body.temp_ca_cert, res.body.temp_ca_key)
  if not pair then steps.fail("an RA-TLS client certificate for " .. c.name, tostring(err)) end
  c.issued[k.name] = pair
  return pair
end

local CLIENT = { __index = { issue_for = issue_for } }

local function client_handle(of, a)
  local c = { __kind = "attested_client", name = of.name, of = of.__kind, vm_config = a.vm_config, attester = a }
  for _, f in ipairs(IDENTITY_FIELDS) do c[f] = a.summary[f] end
  return setmetatable(c, CLIENT)
end

M.attested_client = api.define {
  name = "attested_client", group = "rpc",
  signature = "attested_client(kms_or_app, [opts])", returns = "client",
  args = { { "kms_or_app", "table" }, { "opts", "table?", options = { kms = true } } },
  doc = [[An attested caller for `rpc(kms, ..., {client_cert = client})`: a fresh key and its RA-TLS certificate, signed by the temp CA of the KMS it calls (that KMS's `KMS.GetTempCaCert` is called first, as a CVM does before `GetKmsKey`/`GetAppKey`; once per KMS), carrying the attestation of `kms_or_app` (a deployed `kms` handle — a KMS asking for the keys — or an `app(...)`). `opts.kms` issues the certificate for that KMS now (then `client.cert`, `client.key` are set; otherwise each `rpc` issues one for the KMS it calls). The client has the attested identity as hex: `app_id`, `compose_hash`, `instance_id`, `device_id`, `os_image_hash`, `mr_aggregated`, `mr_system`, `tcb_status`, and `vm_config` (what the caller sends as `vm_config`). Targets: sim (from the emulator's identity), local (the simulator's `Attest` over the key; one fixture identity for every caller), vmm (not available: needs an app CVM).]],
  example = [[local caller = attested_client(dst)
expect_ok(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }))]],
  fn = function(of, opts)
    local k = (opts or {}).kms
    if k ~= nil and (type(k) ~= "table" or k.__kind ~= "kms") then
      api.usage_error("attested_client: opts.kms must be a kms handle (the KMS to call)")
    end
    return steps.run(string.format("attested_client %s%s", of.name or "?", k and (" for " .. k.name) or ""), function(step)
      local r = run()
      local c = client_handle(of, attester(r, of, "attested_client"))
      if k then
        local pair = c:issue_for(r, k)
        c.cert, c.key = pair.cert, pair.key
      end
      step.actual = string.format("%s %s: app_id %s, device %s", of.__kind, of.name, tostring(c.app_id), tostring(c.device_id))
      return c
    end)
  end,
}

local CONFIG_OPTS = { subject = true, alt_names = true, usage_server_auth = true, usage_client_auth = true,
  ext_quote = true, ext_app_info = true, not_before = true, not_after = true, org_name = true, api_version = true,
  confirm = true }

M.cert_request = api.define {
  name = "cert_request", group = "rpc",
  signature = "cert_request(kms_or_app, [opts])", returns = "request",
  args = { { "kms_or_app", "table" }, { "opts", "table?", options = CONFIG_OPTS } },
  doc = [[A signed `KMS.SignCert` request body for a fresh key, its CSR carrying the attestation of `kms_or_app` (an `app(...)` or a deployed `kms`), as a CVM's guest agent sends it: `{api_version, csr, signature, vm_config}`. `opts`: `subject` (default the name), `alt_names` (list), `usage_server_auth`, `usage_client_auth`, `ext_quote` (put the attestation in the certificate), `ext_app_info`, `not_before`, `not_after` (Unix seconds), `org_name`, `api_version` (1 or 2, default 2), `confirm` (the confirm word, to test its check). The request remembers its key and identity for `expect_cert_chain`.]],
  example = [[local req = cert_request(wallet, { subject = "wallet.example", usage_server_auth = true })
expect_cert_chain(rpc(src, "KMS.SignCert", req), src, req)]],
  fn = function(of, opts)
    opts = opts or {}
    return steps.run("cert_request " .. tostring(of.name), function(step)
      local r = run()
      local a = attester(r, of, "cert_request")
      local config = {
        subject = opts.subject or of.name, subject_alt_names = opts.alt_names or {}, org_name = opts.org_name,
        usage_server_auth = opts.usage_server_auth == true, usage_client_auth = opts.usage_client_auth == true,
        ext_quote = opts.ext_quote == true, ext_app_info = opts.ext_app_info == true,
        not_before = opts.not_before, not_after = opts.not_after,
      }
      local body, key = a:cert_request(config, opts.api_version, opts.confirm)
      if not body then steps.fail("a SignCert request for " .. of.name, tostring(key)) end
      local hexed = { api_version = body.api_version, csr = crypto.hex(body.csr), signature = crypto.hex(body.signature),
        vm_config = body.vm_config }
      -- Kept off the wire: the key stays here, the identity is what the CSR attests.
      local meta = client_handle(of, a)
      meta.public_key_der = crypto.key_info(key).public_der
      meta.subject = config.subject
      setmetatable(hexed, { __index = { request_of = meta } })
      step.actual = string.format("CSR v%d for %q (app_id %s)", body.api_version, config.subject, tostring(meta.app_id))
      return hexed
    end)
  end,
}

M.expect_cert_chain = api.define {
  name = "expect_cert_chain", group = "assert",
  signature = "expect_cert_chain(res, kms, request)", returns = "chain",
  args = { { "res", "table" }, { "kms", "kms" }, { "request", "table" } },
  doc = [[Checks a `KMS.SignCert` answer: success, a chain of three certificates (leaf, app CA, KMS CA), the leaf verifying through the app CA up to the KMS CA that `KMS.GetMeta` of `kms` reports, the leaf's public key being the request's, its subject the requested one and its app id extension the attested app's. Returns the chain as a list of PEM strings.]],
  example = [[local chain = expect_cert_chain(rpc(src, "KMS.SignCert", req), src, req)]],
  fn = function(res, k, req)
    local meta = req.request_of
    if type(meta) ~= "table" then api.usage_error("expect_cert_chain: request must come from cert_request(...)") end
    return steps.run("expect_cert_chain from " .. k.name, function(step)
      step.expected = "a certificate for " .. meta.subject .. " that verifies against the CA of " .. k.name
      if not res.ok then steps.fail(step.expected, string.format("HTTP %d %s", res.status or 0, tostring(res.error))) end
      local chain = res.body and res.body.certificate_chain
      if type(chain) ~= "table" or #chain ~= 3 then steps.fail(step.expected, "certificate_chain: " .. json.encode(chain)) end
      local meta_res = run():rpc(k, "KMS.GetMeta", nil, {})
      if not meta_res.ok then steps.fail("the CA of " .. k.name, tostring(meta_res.error)) end
      local ok, why = crypto.verify_chain(chain[1], { roots = meta_res.body.ca_cert, intermediates = chain[2] })
      if not ok then steps.fail(step.expected, "the chain does not verify: " .. tostring(why)) end
      local leaf = crypto.parse_cert(chain[1])
      if leaf.public_key_der ~= meta.public_key_der then steps.fail(step.expected, "the leaf certifies another key") end
      if (leaf.subject_fields or {}).CN ~= meta.subject then
        steps.fail(step.expected, "the leaf's subject is " .. tostring(leaf.subject))
      end
      -- dstack's app id extension (1.3.6.1.4.1.62397.1.3): the certificate names the attested app.
      local app_id = leaf.extensions and leaf.extensions["1.3.6.1.4.1.62397.1.3"]
      if not app_id or crypto.hex(app_id) ~= meta.app_id then
        steps.fail(step.expected, "the leaf's app id is " .. (app_id and crypto.hex(app_id) or "missing")
          .. ", the request attested " .. tostring(meta.app_id))
      end
      step.actual = "verified: " .. leaf.subject .. " <- " .. crypto.parse_cert(chain[2]).subject .. " <- KMS CA"
      return chain
    end)
  end,
}

-- A copy of a policy's config that keeps the JSON object/array markers.
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  local mt = getmetatable(v)
  if mt then setmetatable(out, mt) end
  if W.key_order(v) then W.object(out, W.key_order(v)) end
  return out
end

M.allow_apps = api.define {
  name = "allow_apps", group = "policy",
  signature = "allow_apps(policy, client, ...)", returns = "policy",
  args = { { "policy", "policy" }, { "client", "table", variadic = true } },
  doc = [[`policy` plus these attested apps (from `attested_client` or `cert_request`, or KMS callers): each one's OS image in `osImages` and its app id registered with its compose hash, on any device. The other rules of `policy` stay.]],
  example = [[set_policy(auth_src, allow_apps(allow(src), wallet_client))]],
  fn = function(p, ...)
    local config = copy(p.config)
    config.osImages = config.osImages or json.array()
    config.apps = config.apps or W.object({}, {})
    local names = {}
    for _, c in ipairs { ... } do
      local meta = c.request_of or c
      if type(meta) ~= "table" or not meta.app_id then api.usage_error("allow_apps: expected attested clients or cert requests") end
      local os = "0x" .. meta.os_image_hash
      local seen = false
      for _, x in ipairs(config.osImages) do if x == os then seen = true end end
      if not seen then config.osImages[#config.osImages + 1] = os end
      config.apps["0x" .. meta.app_id] = json.ordered({ "composeHashes", json.array({ "0x" .. meta.compose_hash }),
        "devices", json.array(), "allowAnyDevice", true })
      names[#names + 1] = meta.name
    end
    return policies.custom(config, "allow_apps(" .. tostring(p.description) .. ", " .. table.concat(names, ", ") .. ")")
  end,
}

return M
