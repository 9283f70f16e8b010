-- Attested callers of kms-sim (kmsrun's KMS EMULATOR): the SCALE codec and dstack's CSR
-- shape, SignCert issuing a certificate that verifies against the KMS CA, GetKmsKey and
-- GetAppKey with RA-TLS client certificates from emu/kms/ratls.lua, the mutation switches
-- that remove each caller check, and the emulator knobs (device, TCB, old-format cert).
-- These tests describe the emulator; they say nothing about the real KMS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "lib/?.lua;" .. package.path

local T = require "kmsrun.lib.testing"
local F = require "kms_sim_fixture"
local crypto = require "kmsrun.crypto"
local cjson = require "cjson.safe"
local scale = require "kmsrun.lib.scale"
local csr = require "kmsrun.kms.csr"
local A = require "kmsrun.emu.kms.attestation"
local ratls = require "kmsrun.emu.kms.ratls"
local registry = require "kmsrun.emu.mutations"
local policy = require "kmsrun.emu.auth.policy"

local WALLET = { compose = "services: {wallet: {image: wallet:1}}", salt = "wallet-instance-1" }

-- A policy allowing h (as a KMS) and the given attesters (as apps).
local function allow(h, ...)
  local p = F.allow(h)
  p.apps = {}
  for _, a in ipairs { ... } do
    table.insert(p.osImages, "0x" .. a.summary.os_image_hash)
    p.apps["0x" .. a.summary.app_id] = { composeHashes = { "0x" .. a.summary.compose_hash }, devices = {}, allowAnyDevice = true }
  end
  return p
end

-- A bootstrapped instance in runtime mode whose auth server allows it and the attesters.
local function runtime(opts, ...)
  local a = F.auth({})
  local o = { webhook = a.url }
  for k, v in pairs(opts or {}) do o[k] = v end
  local h = assert(F.kms(o))
  assert(a:set_policy(allow(h, ...)))
  F.bootstrap_and_finish(h)
  return h, a
end

local function temp_ca(h)
  local res = F.rpc(h, "KMS.GetTempCaCert", "{}")
  assert(res.status == 200, res.body)
  return res.json.temp_ca_cert, res.json.temp_ca_key
end

local function client_for(h, attester)
  local pair = assert(attester:client_cert(temp_ca(h)))
  return { insecure = true, cert = pair.cert, key = pair.key }
end

local function sign_cert(h, body)
  return F.rpc(h, "KMS.SignCert", cjson.encode {
    api_version = body.api_version, csr = crypto.hex(body.csr), signature = crypto.hex(body.signature), vm_config = body.vm_config })
end

T.test("scale: compact lengths, strings, options, vectors; truncation is a Codec error", function()
  for _, n in ipairs { 0, 1, 63, 64, 16383, 16384, 1 << 29 } do
    T.eq(scale.decode(scale.compact(n), function(r) return r:compact() end, true), n, "compact " .. n)
  end
  T.eq(crypto.hex(scale.compact(1)), "04")
  T.eq(crypto.hex(scale.compact(64)), "0101")
  local enc = scale.str("ab") .. scale.option(nil, scale.u64) .. scale.option(7, scale.u64) .. scale.vec({ "x", "yz" }, scale.str) .. scale.bool(true)
  local v = assert(scale.decode(enc, function(r)
    return { r:str(), r:option(r.u64), r:option(r.u64), r:vec(r.str), r:bool() }
  end, true))
  T.eq(v[1], "ab"); T.eq(v[2], nil); T.eq(v[3], 7); T.eq(v[4][2], "yz"); T.eq(v[5], true)
  local _, err = scale.decode(enc:sub(1, -3), function(r) return { r:str(), r:option(r.u64), r:option(r.u64), r:vec(r.str), r:bool() } end)
  T.eq(err, "Codec error")
  T.eq(select(2, scale.decode("\2", function(r) return r:bool() end)), "Codec error", "a bool is 0 or 1")
end)

T.test("csr: V1 and V2 round trip, signature and confirm word checks", function()
  local key = crypto.keygen("P-256")
  local spki = crypto.key_info(key).public_der
  local t = { pubkey = spki, attestation = "att", config = { subject = "s", subject_alt_names = { "a", "b" },
    usage_server_auth = true, ext_quote = true, ext_app_info = true, not_after = 99, org_name = "O" } }
  for _, v in ipairs { 1, 2 } do
    local enc = csr.encode(t, v)
    local d = assert(csr.decode(enc, v))
    T.eq(d.confirm, csr.CONFIRM); T.eq(d.pubkey, spki); T.eq(d.attestation, "att")
    T.eq(d.config.subject_alt_names[2], "b"); T.eq(d.config.org_name, "O"); T.eq(d.config.usage_server_auth, true)
    T.eq(d.config.not_after, v == 2 and 99 or nil, "validity only in V2")
    T.eq(csr.verify(d, enc, csr.sign(key, enc)), true)
    T.eq(select(2, csr.verify(d, enc, csr.sign(crypto.keygen("P-256"), enc))), "Invalid signature")
  end
  local bad = csr.encode({ confirm = "nope", pubkey = spki, config = {}, attestation = "" })
  T.eq(select(2, csr.verify(assert(csr.decode(bad, 2)), bad, csr.sign(key, bad))), "Invalid confirm word")
  T.eq(select(2, csr.decode("\4ab", 2)), "Codec error")
end)

T.test("SignCert: a real CSR gets a chain that verifies against the KMS CA", function()
  local app = ratls.attester(WALLET)
  local h, a = runtime(nil, app)
  local body, key = app:cert_request({ subject = "wallet.example.test", subject_alt_names = { "wallet.example.test" },
    usage_server_auth = true, usage_client_auth = true, ext_quote = true })
  local res = sign_cert(h, body)
  T.eq(res.status, 200, res.body)
  local chain = res.json.certificate_chain
  T.eq(#chain, 3)
  local meta = F.rpc(h, "KMS.GetMeta", "{}").json
  T.eq(chain[3], meta.ca_cert, "the chain ends at the KMS CA")
  T.ok(crypto.verify_chain(chain[1], { roots = meta.ca_cert, intermediates = chain[2] }))
  local leaf, ca = crypto.parse_cert(chain[1]), crypto.parse_cert(chain[2])
  T.eq(leaf.public_key_der, crypto.key_info(key).public_der, "the leaf certifies the CSR key")
  T.eq(leaf.subject_fields.CN, "wallet.example.test")
  T.eq(leaf.san[1], "DNS:wallet.example.test")
  T.eq(leaf.extensions["1.3.6.1.4.1.62397.1.3"], crypto.unhex(app.summary.app_id), "app id extension")
  T.eq(leaf.extensions["1.3.6.1.4.1.62397.1.4"], "app:custom")
  T.ok(leaf.extensions["2.5.29.37"] ~= nil, "extended key usage")
  T.ok(leaf.extensions[A.OID] ~= nil, "ext_quote carries the attestation")
  T.eq(ca.subject_fields.CN, "Dstack App CA"); T.eq(ca.pathlen, 0)
  -- The app CA is derived per app: the same app gets the same CA key, another app another.
  local again = sign_cert(h, (app:cert_request({ subject = "x" }))).json.certificate_chain
  T.eq(crypto.parse_cert(again[2]).public_key_der, ca.public_key_der)
  -- Validity and organisation from the request.
  local now = os.time()
  local timed = sign_cert(h, (app:cert_request({ subject = "t", org_name = "Wallet Inc", not_before = now - 60, not_after = now + 3600 })))
  T.eq(timed.status, 200, timed.body)
  local t = crypto.parse_cert(timed.json.certificate_chain[1])
  T.ok(math.abs(t.not_before - (now - 60)) <= 2 and math.abs(t.not_after - (now + 3600)) <= 2, "validity as requested")
  T.eq(t.subject_fields.O, "Wallet Inc")
  T.eq(t.extensions[A.OID], nil, "no attestation without ext_quote")
  -- V1 requests are upgraded and signed too.
  local v1 = sign_cert(h, (app:cert_request({ subject = "v1" }, 1)))
  T.eq(v1.status, 200, v1.body)
  h:close(); a:close()
end)

T.test("SignCert: error chain in upstream's order", function()
  local app = ratls.attester(WALLET)
  local h, a = runtime(nil, app)
  local body = app:cert_request({ subject = "s" })
  local function err(b) return F.rpc_error(h, "KMS.SignCert", cjson.encode(b)) end
  local hexed = { api_version = 2, csr = crypto.hex(body.csr), signature = crypto.hex(body.signature), vm_config = body.vm_config }
  local function with(k, v) local c = {}; for x, y in pairs(hexed) do c[x] = y end; c[k] = v; return c end
  T.eq(err(with("csr", "deadbeef")), "Failed to parse csr: Codec error")
  T.eq(err(with("signature", crypto.hex(crypto.sign(crypto.keygen(), body.csr)))), "Failed to verify csr signature: Invalid signature")
  -- A V2 body read as V1 decodes (trailing bytes are ignored) into a quote that is not one.
  T.match(err(with("api_version", 1)), "^Failed to upgrade csr v1 to v2: ", "a V2 body read as V1")
  -- An attestation bound to another key: the CSR names (and is signed by) a key the
  -- attestation's report data does not cover.
  local other = crypto.keygen()
  local t = assert(csr.decode(body.csr, 2))
  t.pubkey = crypto.key_info(other).public_der
  local forged = csr.encode(t, 2)
  T.eq(err { api_version = 2, csr = crypto.hex(forged), signature = crypto.hex(csr.sign(other, forged)), vm_config = "" },
    "Quote verification failed: report data mismatch")
  -- An app the policy does not register.
  local b = ratls.attester({ compose = "stranger", salt = "s" }):cert_request({ subject = "x" })
  T.eq(err { api_version = 2, csr = crypto.hex(b.csr), signature = crypto.hex(b.signature), vm_config = b.vm_config },
    "Boot denied: app not registered")
  h:close(); a:close()
end)

T.test("GetKmsKey and GetAppKey accept attested callers and refuse denied ones", function()
  local app = ratls.attester(WALLET)
  local h, a = runtime(nil, app)
  local peer = ratls.attester { compose = "another kms", salt = "peer" }
  -- peer is not allowed as a KMS: Boot denied.
  local tls = client_for(h, peer)
  T.eq(F.rpc_error(h, "KMS.GetKmsKey", '{"vm_config":""}', { tls = tls }), "Boot denied: aggregated MR not allowed")
  local p = allow(h, app)
  table.insert(p.kms.mrAggregated, "0x" .. peer.summary.mr_aggregated)
  assert(a:set_policy(p))
  local ok = F.rpc(h, "KMS.GetKmsKey", '{"vm_config":""}', { tls = tls })
  T.eq(ok.status, 200, ok.body)
  T.ok(ok.json.keys[1].ca_key:match("PRIVATE KEY"), "the KMS keys")
  -- GetAppKey: the registered app gets keys, a stranger does not.
  local keys = F.rpc(h, "KMS.GetAppKey", cjson.encode { api_version = 1, vm_config = app.vm_config }, { tls = client_for(h, app) })
  T.eq(keys.status, 200, keys.body)
  T.eq(keys.json.os_image_hash, app.summary.os_image_hash)
  local stranger = ratls.attester { compose = "stranger", salt = "s" }
  T.eq(F.rpc_error(h, "KMS.GetAppKey", '{"api_version":1}', { tls = client_for(h, stranger) }),
    "App not allowed: Boot denied: app not registered")
  -- A certificate from another CA is refused at the handshake.
  local foreign_ca_key = crypto.keygen()
  local foreign_ca = crypto.cert { key = foreign_ca_key, subject = { CN = "not the temp CA" }, ca = true }
  local pair = app:client_cert(foreign_ca, foreign_ca_key)
  local res = require("kmsrun.http").request(h:url("/prpc/KMS.GetAppKey?json"),
    { method = "POST", body = "{}", tls = { insecure = true, cert = pair.cert, key = pair.key } })
  T.ok(res == nil or res.status ~= 200, "a foreign client certificate gets no keys")
  h:close(); a:close()
end)

T.test("skip-kms-caller-check and skip-app-check remove exactly their check", function()
  local peer = ratls.attester { compose = "another kms", salt = "peer" }
  local stranger = ratls.attester { compose = "stranger", salt = "s" }
  for _, case in ipairs {
    { mutation = "skip-kms-caller-check", kms_ok = true, app_ok = false },
    { mutation = "skip-app-check", kms_ok = false, app_ok = true },
  } do
    local h, a = runtime({ mutations = { case.mutation } })
    local k = F.rpc(h, "KMS.GetKmsKey", '{"vm_config":""}', { tls = client_for(h, peer) })
    T.eq(k.status == 200, case.kms_ok, case.mutation .. ": GetKmsKey to a denied KMS")
    local g = F.rpc(h, "KMS.GetAppKey", '{"api_version":1}', { tls = client_for(h, stranger) })
    T.eq(g.status == 200, case.app_ok, case.mutation .. ": GetAppKey to an unregistered app")
    local body = stranger:cert_request({ subject = "x" })
    T.eq(sign_cert(h, body).status == 200, case.app_ok, case.mutation .. ": SignCert to an unregistered app")
    -- Still no keys without any attestation.
    T.eq(F.rpc_error(h, "KMS.GetKmsKey", "{}"), "No attestation provided")
    T.ok(table.concat(h.logs, "\n"):find("TEST-ONLY MUTATION ACTIVE: " .. case.mutation, 1, true), "announced")
    h:close(); a:close()
  end
end)

T.test("OS image verification: an image the server lacks is refused; skip-os-image-verification accepts it", function()
  local server = require "kmsrun.lib.http_server"
  local identity = require "kmsrun.emu.kms.identity"
  local known = crypto.hex(identity.os_image_hash("dstack-0.5.7")) .. ".tar.gz"
  local images = assert(server.listen(function(req)
    if req.path == "/" .. known then return 200, "image" end
    return 404, "no"
  end))
  local legacy = ratls.attester { compose = "legacy", salt = "l", image = "dstack-0.5.3" }
  for _, m in ipairs { {}, { "skip-os-image-verification" } } do
    local h, a = runtime({ mutations = m, core = { image = { verify = true, download_url = images:url("/{OS_IMAGE_HASH}.tar.gz") } } }, legacy)
    local res = F.rpc(h, "KMS.GetAppKey", '{"api_version":1}', { tls = client_for(h, legacy) })
    if #m == 0 then
      T.eq(res.status, 400)
      T.match(res.json.error, "^App not allowed: Failed to verify os image hash: Failed to verify os image hash: Failed to download image: .* returned 404 Not Found")
    else
      T.eq(res.status, 200, "the mutation skips the download: " .. res.body)
    end
    h:close(); a:close()
  end
  images:close()
end)

T.test("auth emulator switches: OS image, device and TCB rules each removable", function()
  local boot = { mrAggregated = "aa", osImageHash = "0b", appId = "cc", composeHash = "dd", instanceId = "ee",
    deviceId = "ff", tcbStatus = "OutOfDate", advisoryIds = { "SA-1" } }
  local cfg = { osImages = { "0x0a" }, kms = { mrAggregated = { "0xaa" }, devices = { "0x01" } },
    allowedTcbStatuses = { "UpToDate", "OutOfDate" }, allowedAdvisoryIds = { "SA-1" } }
  local function reason(c, skip)
    local _, r = policy.decide(c, "/bootAuth/kms", boot, skip)
    return r.reason
  end
  T.eq(reason(cfg), "OS image is not allowed")
  T.eq(reason(cfg, { ["auth-ignore-os-image"] = true }), "KMS is not allowed to boot on this device")
  T.eq(reason(cfg, { ["auth-ignore-os-image"] = true, ["auth-ignore-device"] = true }), "")
  cfg.allowedTcbStatuses = { "UpToDate" }
  T.eq(reason(cfg, { ["auth-ignore-os-image"] = true, ["auth-ignore-device"] = true }), "TCB status is not allowed")
  T.eq(reason(cfg, { ["auth-ignore-os-image"] = true, ["auth-ignore-device"] = true, ["auth-ignore-tcb-status"] = true }), "")
  cfg.allowedTcbStatuses, cfg.allowedAdvisoryIds = { "OutOfDate" }, {}
  T.eq(reason(cfg, { ["auth-ignore-os-image"] = true, ["auth-ignore-device"] = true }), "advisory ID is not allowed")
  -- The server takes them by name, refuses a KMS switch, and announces them.
  local said = {}
  local srv = assert(require("kmsrun.emu.auth.server").start { policy = {}, mutations = "auth-ignore-device",
    on_message = function(l) said[#said + 1] = l end })
  T.contains(table.concat(said, "\n"), "TEST-ONLY MUTATION ACTIVE: auth-ignore-device")
  srv:close()
  local none, err = require("kmsrun.emu.auth.server").start { policy = {}, mutations = { "skip-app-check" } }
  T.eq(none, nil)
  T.match(err, "it is a switch of the kms emulator")
end)

T.test("kmsrun serve auth --mutation: announced, applied, and a KMS switch is a usage error", function()
  local proc, fs, time = require "kmsrun.proc", require "kmsrun.fs", require "kmsrun.time"
  local KMSRUN = proc.exe()
  local dir = F.tmpdir()
  local cfg, out, err = dir .. "/p.json", dir .. "/out", dir .. "/err"
  -- Device rules that deny the boot below, unless ignored.
  assert(fs.write(cfg, cjson.encode { osImages = { "0x0b" }, kms = { mrAggregated = { "0xaa" }, devices = { "0x01" } } }))
  local p = assert(proc.spawn({ KMSRUN, "serve", "auth", "--config", cfg, "--port", "0", "--mutation", "auth-ignore-device" },
    { stdout = out, stderr = err }))
  local url
  for _ = 1, 200 do
    url = (fs.read(out) or ""):match("listening on (http://[^\n]+)\n")
    if url or not p:running() then break end
    time.sleep(0.05)
  end
  assert(url, "kmsrun serve auth did not listen: " .. tostring(fs.read(err)))
  local res = assert(require("kmsrun.http").request(url .. "/bootAuth/kms", { method = "POST",
    headers = { ["Content-Type"] = "application/json" }, body = cjson.encode { mrAggregated = "aa", osImageHash = "0b",
      appId = "cc", composeHash = "dd", instanceId = "ee", deviceId = "ff", tcbStatus = "UpToDate" } }))
  T.eq(cjson.decode(res.body).isAllowed, true, res.body)
  p:signal("TERM")
  T.eq(p:wait(10), 0)
  T.contains(fs.read(err), "TEST-ONLY MUTATION ACTIVE: auth-ignore-device")
  local bad = assert(proc.spawn({ KMSRUN, "serve", "auth", "--mutation", "skip-app-check" }, { stdout = out, stderr = out }))
  T.eq(bad:wait(10), 2)
  T.contains(fs.read(out), "it is a switch of the kms emulator")
end)

T.test("one registry lists every switch with its emulator and description", function()
  local seen = {}
  for _, s in ipairs(registry.list()) do
    T.ok(s.emulator == "kms" or s.emulator == "auth", s.name)
    T.ok(#s.description > 10 and #s.check > 3, s.name .. " is described")
    seen[s.name] = s.emulator
  end
  for _, name in ipairs { "skip-bootstrap-self-check", "skip-receiver-source-check", "skip-runtime-self-check",
    "allow-no-quote", "skip-kms-caller-check", "skip-app-check", "auth-ignore-os-image", "auth-ignore-device",
    "auth-ignore-tcb-status", "skip-os-image-verification", "skip-os-image-fill" } do
    T.ok(seen[name], name .. " is registered")
  end
  T.eq(registry.find("skip-os-image-fill").knob, "old_format_cert")
  T.eq(registry.find("skip-os-image-verification").knob, "verify_images")
  local split = assert(registry.split("skip-app-check,auth-ignore-device"))
  T.eq(split.kms[1], "skip-app-check"); T.eq(split.auth[1], "auth-ignore-device")
  T.match(select(2, registry.split("nope")), "^unknown mutation 'nope'")
end)

T.test("knobs: device, TCB status and advisories reach the attestation; old-format cert has no vm_config", function()
  local a = F.auth({})
  local h = assert(F.kms { webhook = a.url, device = crypto.hex(require("kmsrun.emu.kms.identity").device_ppid("rack-2")),
    tcb_status = "OutOfDate", advisories = { "INTEL-SA-00837" }, old_format_cert = true })
  local other = assert(F.kms { webhook = a.url })
  T.ok(h.identity.device_id ~= other.identity.device_id, "another device label, another device id")
  local info = F.rpc(h, "Onboard.GetAttestationInfo", "{}").json
  T.eq(info.device_id, h.identity.device_id)
  local p = F.allow(h)
  p.allowedTcbStatuses, p.allowedAdvisoryIds = { "OutOfDate" }, { "INTEL-SA-00837" }
  assert(a:set_policy(p))
  F.bootstrap_and_finish(h)
  local calls = a:decisions()
  local last = calls[#calls]
  T.eq(last.tcbStatus, "OutOfDate")
  -- The RPC certificate's attestation: no vm_config, so an empty os_image_hash for a receiver.
  local blob = A.from_cert(assert(require("kmsrun.fs").read(h.cert_dir .. "/rpc.crt")))
  local v = assert(A.verify(blob))
  T.eq(v.vm_config, "")
  T.eq(assert(A.boot_info(v, false, "")).os_image_hash, "", "the receiver has to fill it")
  T.eq(#v.advisory_ids, 1)
  h:close(); other:close(); a:close()
end)

T.test("cleanup", function() F.cleanup() end)
