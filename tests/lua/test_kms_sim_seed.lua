-- The seed test guide (KMS self-authorization, five cases), driven step by step with plain
-- http.request calls against two kms-sim EMULATOR instances and two auth-simple compatible
-- servers. It checks that the emulator reproduces every expected outcome of the guide, and
-- that each test-only mutation switch, applied alone, breaks exactly the check it removes.
-- Results here are about the emulator, not about the real KMS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "lib/?.lua;" .. package.path

local T = require "kmsrun.lib.testing"
local F = require "kms_sim_fixture"
local http = require "kmsrun.http"
local time = require "kmsrun.time"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local cjson = require "cjson.safe"
local A = require "kmsrun.emu.kms.attestation"

-- curl -s -X POST <base>/prpc/<method>?json -H 'Content-Type: application/json' -d <body>
local function post(base, method, body)
  local tls = base:match("^https:") and { insecure = true } or nil -- curl -k
  local res, err = http.request(base .. "/prpc/" .. method .. "?json", {
    method = "POST", headers = { ["Content-Type"] = "application/json" }, body = body or "{}", tls = tls, fresh = true,
  })
  if not res then return nil, err end
  return res, cjson.decode(res.body)
end

local function get(url)
  return http.request(url, { tls = url:match("^https:") and { insecure = true } or nil, fresh = true })
end

-- The guide's readiness loop, but waiting for a 200 (gotcha 1/6).
local function wait_ready(base, method, timeout)
  local deadline = time.now() + (timeout or 10)
  while time.now() < deadline do
    local res = post(base, method, "{}")
    if res and res.status == 200 then return true end
    time.sleep(0.02)
  end
  error("not ready: " .. base .. " " .. method)
end

-- Policies written from the CURRENT attestation values (guide: allow-single, deny-by-mr,
-- allow-src-and-dst), with 0x prefixes as the guide's sed templates produce them.
local function allow_single(os_hash, mr)
  return { osImages = { "0x" .. os_hash }, gatewayAppId = "any",
    kms = { mrAggregated = { "0x" .. mr }, devices = {}, allowAnyDevice = true }, apps = {} }
end
local function deny_by_mr(os_hash)
  return { osImages = { "0x" .. os_hash }, gatewayAppId = "any",
    kms = { mrAggregated = { "0x" .. string.rep("0", 64) }, devices = {}, allowAnyDevice = true }, apps = {} }
end
local function allow_both(src_os, dst_os, src_mr, dst_mr)
  return { osImages = { "0x" .. src_os, "0x" .. dst_os }, gatewayAppId = "any",
    kms = { mrAggregated = { "0x" .. src_mr, "0x" .. dst_mr }, devices = {}, allowAnyDevice = true }, apps = {} }
end
local PLACEHOLDER = { osImages = {}, gatewayAppId = "any", kms = { mrAggregated = {}, devices = {}, allowAnyDevice = true }, apps = {} }

local function onboard_url(h) return "http://127.0.0.1:" .. h.port end
local function runtime_url(h) return "https://127.0.0.1:" .. h.port end

-- GET /finish, then wait for the runtime endpoint (same port, now HTTPS) to answer /health.
local function finish(h)
  local res = assert(get(onboard_url(h) .. "/finish"))
  assert(res.status == 200 and res.body == "OK", "/finish did not return OK")
  local deadline = time.now() + 10
  while time.now() < deadline do
    local r = get(runtime_url(h) .. "/health")
    if r and r.status == 200 then return end
    time.sleep(0.02)
  end
  error("runtime endpoint of " .. tostring(h) .. " not ready")
end

T.test("seed guide: the five cases, in order, against two emulated KMS instances", function()
  -- Shared setup: two auth servers with the placeholder (deny-all) policy, two KMS in onboard mode.
  local auth_src, auth_dst = F.auth(PLACEHOLDER), F.auth(PLACEHOLDER)
  local kms_src = assert(F.kms { webhook = auth_src.url, name = "kms-src", image = "dstack-0.5.7" })
  local kms_dst = assert(F.kms { webhook = auth_dst.url, name = "kms-dst", image = "dstack-0.5.7" })
  local SRC_ONBOARD, DST_ONBOARD = onboard_url(kms_src), onboard_url(kms_dst)
  wait_ready(SRC_ONBOARD, "Onboard.GetAttestationInfo")
  wait_ready(DST_ONBOARD, "Onboard.GetAttestationInfo")
  local _, src_att = post(SRC_ONBOARD, "Onboard.GetAttestationInfo", "{}")
  local _, dst_att = post(DST_ONBOARD, "Onboard.GetAttestationInfo", "{}")
  for _, att in ipairs { src_att, dst_att } do
    for _, k in ipairs { "device_id", "mr_aggregated", "os_image_hash" } do
      T.match(att[k], "^%x+$", k .. " is hex without 0x")
    end
  end
  T.ok(src_att.mr_aggregated ~= dst_att.mr_aggregated, "two deployments, two MRs")
  local SRC_OS, SRC_MR, DST_OS, DST_MR = src_att.os_image_hash, src_att.mr_aggregated, dst_att.os_image_hash, dst_att.mr_aggregated

  -- Case 1: bootstrap is denied when self is not allowed.
  auth_src:set_policy(deny_by_mr(SRC_OS))
  local res, body = post(SRC_ONBOARD, "Onboard.Bootstrap", '{"domain":"kms-src.example.test"}')
  T.eq(res.status, 400, "case 1: bootstrap refused")
  T.ok(body.error, "case 1: the response contains .error")
  T.match(body.error, "^KMS is not allowed to bootstrap", "case 1: denied because the KMS is not allowed")
  T.eq(body.error, "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed")

  -- Case 2: bootstrap succeeds after self is whitelisted.
  auth_src:set_policy(allow_single(SRC_OS, SRC_MR))
  res, body = post(SRC_ONBOARD, "Onboard.Bootstrap", '{"domain":"kms-src.example.test"}')
  T.eq(res.status, 200, "case 2: bootstrap allowed: " .. res.body)
  T.ok(body.ca_pubkey and body.k256_pubkey and body.attestation, "case 2: ca_pubkey, k256_pubkey and attestation")
  finish(kms_src)
  local SRC_RUNTIME = runtime_url(kms_src)
  local _, src_meta = post(SRC_RUNTIME, "KMS.GetMeta", "{}")
  T.ok(src_meta and src_meta.ca_cert, "case 2: GetMeta succeeds after the switch")

  -- Case 3: the receiver rejects onboarding from a denied source.
  auth_src:set_policy(allow_both(SRC_OS, DST_OS, SRC_MR, DST_MR))
  auth_dst:set_policy(deny_by_mr(SRC_OS))
  local onboard_body = cjson.encode { source_url = SRC_RUNTIME .. "/prpc", domain = "kms-dst.example.test" }
  res, body = post(DST_ONBOARD, "Onboard.Onboard", onboard_body)
  T.eq(res.status, 400, "case 3: first onboard attempt rejected")
  T.eq(body.error, "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed")
  auth_dst:set_policy(allow_single(SRC_OS, SRC_MR))
  res, body = post(DST_ONBOARD, "Onboard.Onboard", onboard_body)
  T.eq(res.status, 200, "case 3: second attempt succeeds: " .. res.body)
  T.eq(body.k256_pubkey, src_meta.k256_pubkey, "case 3: the receiver inherits the source's k256 key")
  finish(kms_dst)
  local _, dst_meta = post(runtime_url(kms_dst), "KMS.GetMeta", "{}")
  T.ok(dst_meta and dst_meta.ca_cert, "case 3: kms-dst starts normally after /finish")
  T.eq(dst_meta.k256_pubkey, src_meta.k256_pubkey, "case 3: shared identity (gotcha 16)")

  -- Case 4: trusted RPCs fail when the running KMS is no longer allowed.
  res = post(SRC_RUNTIME, "KMS.GetTempCaCert", "{}")
  T.eq(res.status, 200, "case 4: GetTempCaCert works while allowed")
  auth_src:set_policy(deny_by_mr(SRC_OS))
  res, body = post(SRC_RUNTIME, "KMS.GetTempCaCert", "{}")
  T.eq(res.status, 400, "case 4: denied after the flip")
  T.eq(body.error, "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed")
  for _, call in ipairs { { "KMS.GetKmsKey", "{}" }, { "KMS.GetAppKey", '{"api_version":1}' }, { "KMS.SignCert", '{"api_version":2}' } } do
    local r, b = post(SRC_RUNTIME, call[1], call[2])
    T.eq(r.status, 400, "case 4: " .. call[1])
    T.eq(b.error, "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed", "case 4: " .. call[1])
  end
  res = post(SRC_RUNTIME, "KMS.GetMeta", "{}")
  T.eq(res.status, 200, "case 4: GetMeta performs no self-check (gotcha 13)")

  -- Case 5: local development uses the quote-required logic; there is no no-quote mode.
  -- (a) the bootstrap answer carried an attestation bound to the generated keys
  local blob = assert(crypto.unhex(src_meta.bootstrap_info.attestation))
  T.ok(A.verify(blob), "case 5: the bootstrap attestation verifies (emulated format)")
  T.eq(cjson.decode(blob).report_data, crypto.hex(A.bootstrap_report_data(assert(crypto.unhex(src_meta.bootstrap_info.ca_pubkey)),
    assert(crypto.unhex(src_meta.bootstrap_info.k256_pubkey)))), "case 5: report data binds the keys")
  -- (b) a KMS without a guest agent cannot bootstrap
  local noquote = assert(F.kms { webhook = auth_src.url, name = "kms-noquote", no_attestation = true })
  res, body = post(onboard_url(noquote), "Onboard.Bootstrap", '{"domain":"kms-nq.example.test"}')
  T.eq(res.status, 400, "case 5: no bootstrap without a quote")
  T.eq(body.error, "KMS is not allowed to bootstrap: failed to build local KMS boot info: Failed to get local KMS attestation: "
    .. "client error (Connect): No such file or directory (os error 2)")
  noquote:close()
  -- (c) the bootstrapped KMS restarted without its guest agent: trusted RPCs need the quote
  auth_src:set_policy(allow_single(SRC_OS, SRC_MR))
  kms_src:close()
  local again = assert(F.kms { webhook = auth_src.url, name = "kms-src-noagent", dir = kms_src.dir, no_attestation = true,
    core = { attest_rpc_cert = false } })
  res, body = post(runtime_url(again), "KMS.GetTempCaCert", "{}")
  T.eq(res.status, 400, "case 5: trusted RPC refused without a quote")
  T.eq(body.error, "KMS self authorization failed: Failed to load cached self boot info: Failed to get local KMS attestation: "
    .. "client error (Connect): No such file or directory (os error 2)")
  again:close(); kms_dst:close(); auth_src:close(); auth_dst:close()
end)

-- Each check of the guide, run on fresh instances; mutation applies to every instance.
-- Returns { [check] = held (boolean) }.
local CHECKS = {}

CHECKS.case1 = function(m)
  local a = F.auth(PLACEHOLDER)
  local k = assert(F.kms { webhook = a.url, mutations = m })
  a:set_policy(deny_by_mr(k.identity.os_image_hash))
  local res = post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  k:close(); a:close()
  return { C1_bootstrap_denied = res.status == 400 }
end

CHECKS.case2 = function(m)
  local a = F.auth(PLACEHOLDER)
  local k = assert(F.kms { webhook = a.url, mutations = m })
  a:set_policy(allow_single(k.identity.os_image_hash, k.identity.mr_aggregated))
  local res = post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  local ok = res.status == 200
  if ok then
    finish(k)
    ok = post(runtime_url(k), "KMS.GetMeta", "{}").status == 200
  end
  k:close(); a:close()
  return { C2_bootstrap_allowed = ok }
end

-- The guide's case 2 on case 1's instance: allowed after a denial. When the denial did not
-- happen (a mutation broke case 1), there is nothing to judge here.
CHECKS.case2_after_deny = function(m)
  local a = F.auth(PLACEHOLDER)
  local k = assert(F.kms { webhook = a.url, mutations = m })
  a:set_policy(deny_by_mr(k.identity.os_image_hash))
  local denied = post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.example.test"}').status == 400
  a:set_policy(allow_single(k.identity.os_image_hash, k.identity.mr_aggregated))
  local allowed = post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.example.test"}').status == 200
  k:close(); a:close()
  return { C2b_bootstrap_allowed_after_deny = not denied or allowed }
end

CHECKS.case3 = function(m)
  local as, ad = F.auth(PLACEHOLDER), F.auth(PLACEHOLDER)
  local s = assert(F.kms { webhook = as.url, mutations = m, name = "src" })
  -- two receivers, so the deny and the allow attempt do not depend on each other
  local d1 = assert(F.kms { webhook = ad.url, mutations = m, name = "dst1" })
  local d2 = assert(F.kms { webhook = ad.url, mutations = m, name = "dst2" })
  local si = s.identity
  as:set_policy { osImages = { si.os_image_hash, d1.identity.os_image_hash }, gatewayAppId = "any",
    kms = { mrAggregated = { si.mr_aggregated, d1.identity.mr_aggregated, d2.identity.mr_aggregated }, devices = {}, allowAnyDevice = true } }
  assert(post(onboard_url(s), "Onboard.Bootstrap", '{"domain":"kms-src.test"}').status == 200)
  finish(s)
  local body = cjson.encode { source_url = runtime_url(s) .. "/prpc", domain = "kms-dst.test" }
  ad:set_policy(deny_by_mr(si.os_image_hash))
  local rejected = post(onboard_url(d1), "Onboard.Onboard", body).status == 400
  ad:set_policy(allow_single(si.os_image_hash, si.mr_aggregated))
  local accepted = post(onboard_url(d2), "Onboard.Onboard", body).status == 200
  s:close(); d1:close(); d2:close(); as:close(); ad:close()
  return { C3a_source_rejected = rejected, C3b_onboard_allowed = accepted }
end

CHECKS.case4 = function(m)
  local a = F.auth(PLACEHOLDER)
  local k = assert(F.kms { webhook = a.url, mutations = m })
  a:set_policy(allow_single(k.identity.os_image_hash, k.identity.mr_aggregated))
  assert(post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.test"}').status == 200)
  finish(k)
  local before = post(runtime_url(k), "KMS.GetTempCaCert", "{}").status == 200
  a:set_policy(deny_by_mr(k.identity.os_image_hash))
  local after = post(runtime_url(k), "KMS.GetTempCaCert", "{}").status == 400
  k:close(); a:close()
  return { C4_runtime_self_check = before and after }
end

CHECKS.case5 = function(m)
  local a = F.auth(PLACEHOLDER)
  local nq = assert(F.kms { webhook = a.url, mutations = m, no_attestation = true })
  a:set_policy(allow_single(nq.identity.os_image_hash, nq.identity.mr_aggregated))
  local res = post(onboard_url(nq), "Onboard.Bootstrap", '{"domain":"kms.test"}')
  local bootstrap_refused = res.status == 400 and not fs.exists(nq.dir .. "/root-ca.key")
  nq:close()
  -- a bootstrapped KMS restarted without its guest agent
  local k = assert(F.kms { webhook = a.url, mutations = m })
  a:set_policy(allow_single(k.identity.os_image_hash, k.identity.mr_aggregated))
  assert(post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.test"}').status == 200)
  finish(k)
  k:close()
  local k2 = assert(F.kms { webhook = a.url, mutations = m, dir = k.dir, no_attestation = true, core = { attest_rpc_cert = false } })
  local rpc_refused = post(runtime_url(k2), "KMS.GetTempCaCert", "{}").status == 400
  k2:close(); a:close()
  return { C5a_no_quote_no_bootstrap = bootstrap_refused, C5b_no_quote_no_trusted_rpc = rpc_refused }
end

local function broken_checks(mutation)
  local broken = {}
  for _, case in ipairs { "case1", "case2", "case2_after_deny", "case3", "case4", "case5" } do
    for check, held in pairs(CHECKS[case](mutation and { mutation } or nil)) do
      if not held then broken[#broken + 1] = check end
    end
  end
  table.sort(broken)
  return broken
end

T.test("seed checks all hold on the unmutated emulator", function()
  T.eq(broken_checks(nil), {})
end)

local EXPECTED = {
  ["skip-bootstrap-self-check"] = { "C1_bootstrap_denied" },
  ["skip-receiver-source-check"] = { "C3a_source_rejected" },
  ["skip-runtime-self-check"] = { "C4_runtime_self_check", "C5b_no_quote_no_trusted_rpc" },
  ["allow-no-quote"] = { "C5a_no_quote_no_bootstrap", "C5b_no_quote_no_trusted_rpc" },
  ["cache-self-decision"] = { "C2b_bootstrap_allowed_after_deny", "C4_runtime_self_check" },
}

for _, mutation in ipairs { "skip-bootstrap-self-check", "skip-receiver-source-check", "skip-runtime-self-check", "allow-no-quote", "cache-self-decision" } do
  T.test("mutation " .. mutation .. " breaks exactly the checks it removes", function()
    T.eq(broken_checks(mutation), EXPECTED[mutation])
  end)
end

T.test("allow-no-quote: bootstrap without a guest agent 'succeeds' with an empty attestation", function()
  local a = F.auth(PLACEHOLDER)
  local k = assert(F.kms { webhook = a.url, mutations = { "allow-no-quote" }, no_attestation = true })
  local res, body = post(onboard_url(k), "Onboard.Bootstrap", '{"domain":"kms.test"}')
  T.eq(res.status, 200)
  T.eq(body.attestation, "", "the bug: an empty attestation")
  T.ok(not crypto.parse_cert(fs.read(k.dir .. "/rpc.crt")).extensions[A.OID], "and an unattested RPC certificate")
  k:close(); a:close()
end)

T.test("cleanup", function() F.cleanup() end)
