-- Upstream's manual test guide dstack/tests/docs/kms-bootstrap-onboard.md, automated:
-- bootstrap kms-src (5), onboard kms-dst from it (6), the trusted runtime RPCs (7.1-7.5)
-- and the deny matrix (7.6: A, B1, B2, C), with the evidence of section 8 saved under
-- the guide's names. Cases are in the guide's order; each deny case comes before the
-- allowance it proves (the guide: "Before the successful bootstrap run, ...").
runbook {
  description = "Upstream's kms-bootstrap-onboard.md: bootstrap, onboard, trusted runtime RPCs and the deny "
    .. "matrix A (bootstrap), B1 (receiver), B2 (source), C (runtime), plus one deny per auth-simple rule "
    .. "(OS image, device, TCB) so every emulator mutation switch is caught (`kmsrun mutants`). "
    .. "Sim only, skipped elsewhere: the attested callers (7.2 GetKmsKey, 7.3 GetAppKey, 7.4 SignCert; tagged "
    .. "`attested`) tell callers apart, which local cannot (its simulator gives every caller one fixture "
    .. "identity) and vmm cannot (it would need app CVMs the target does not deploy); OS image verification "
    .. "(7.3's valid vm_config: the emulator's image server) and B2 by device (a receiver on another machine) "
    .. "need emulator knobs. "
    .. "Not expressible: the guide's gateway and teepod URL variants (a target's concern, not a case), "
    .. "GetMeta with a minimal webhook lacking chain fields (kmsrun's auth servers always answer them).",
  tags = { "kms", "onboard", "upstream" },
  vars = {
    src_domain = { default = "kms-src.example.test", help = "domain given to kms-src's Bootstrap" },
    dst_domain = { default = "kms-dst.example.test", help = "domain given to kms-dst's Onboard" },
  },
  requires = { targets = { "sim", "local", "vmm" } },
}

-- Topology (guide section 2). Policy reminder, from the guide:
--   auth-src (kms-src's webhook) allows kms-src itself, and kms-dst when it calls
--     GetKmsKey during onboarding;
--   auth-dst (kms-dst's webhook) allows kms-src during onboarding, and kms-dst itself
--     before its trusted runtime RPCs are probed.
-- Both start deny-all.
local auth_src = auth_server("auth-src")
local auth_dst = auth_server("auth-dst")
local src = kms("kms-src", { auth = auth_src })
local dst = kms("kms-dst", { auth = auth_dst })
-- B2 by device (sim): a receiver on another machine (an emulator knob), deployed by that case.
local rack2 = kms("kms-rack2", { auth = auth_dst, device = "rack-2" })
-- The guide expects attestation on both (section 2); an instance without it shows
-- that nothing falls back to an unattested mode.
local bare = kms("kms-noattest", { auth = auth_src, attestation = false })
local wallet = app("wallet", { compose = "services: {wallet: {image: wallet:1}}" })
local intruder = app("intruder", { compose = "services: {intruder: {image: evil:1}}" })
-- 7.3 (sim): a KMS verifying its callers' OS images (core.image.verify) against an image
-- server that has only its own image, and an app on an older image.
local verifier = kms("kms-verifier", { auth = auth_src, image = "dstack-0.5.7-sim", verify_images = { "dstack-0.5.7-sim" } })
local legacy = app("legacy", { compose = "services: {legacy: {image: legacy:1}}", image = "dstack-0.5.3-sim" })

local function hex0x(v) return "0x" .. tostring(v):gsub("^0x", "") end
local function att(h, field) return hex0x(h.attestation[field]) end

-- A hand-built auth-simple policy for kms-src's webhook: src's OS image and MR unless
-- the case leaves one out, plus the rules a case sets.
local function src_policy(name, over)
  local config = {
    osImages = { att(src, "os_image_hash"), att(dst, "os_image_hash") },
    gatewayAppId = "any",
    kms = { mrAggregated = { att(src, "mr_aggregated") }, devices = {}, allowAnyDevice = true },
  }
  for k, v in pairs(over or {}) do config[k] = v end
  return policy(name, config)
end

local SELF_DENIED = "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"
local onboard_body -- filled once kms-src runs: the request of 6.1

setup("4.3: deploy both, wait for the onboard endpoints, capture attestation", function()
  deploy(src, dst, bare)
  wait_ready(src, dst, bare)
  capture_attestation(src, dst)
  save("kms-src-att", src.attestation)
  save("kms-dst-att", dst.attestation)
end)

-- 7.6 A: bootstrap deny, and one deny per rule auth-simple applies before the MR.

case("A: bootstrap is denied while kms.mrAggregated leaves kms-src out", { tags = { "guide" } }, function()
  set_policy(auth_src, src_policy("kms-src's OS image, empty kms.mrAggregated", { kms = { mrAggregated = {} } }))
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "kms-src-bootstrap-denied" }),
    "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed")
end)

case("A: bootstrap is denied while osImages leaves kms-src's image out", { tags = { "guide" } }, function()
  set_policy(auth_src, src_policy("kms-src's MR, no OS image", { osImages = {} }))
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }),
    "KMS is not allowed to bootstrap: boot denied: OS image is not allowed")
end)

case("A: bootstrap is denied on a device the policy does not list", { tags = { "guide" } }, function()
  set_policy(auth_src, src_policy("kms-src by MR, only a device no instance has", {
    kms = { mrAggregated = { att(src, "mr_aggregated") }, devices = { "0x" .. string.rep("0", 64) }, allowAnyDevice = false } }))
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }),
    "KMS is not allowed to bootstrap: boot denied: KMS is not allowed to boot on this device")
end)

case("A: bootstrap is denied for a TCB status the policy does not allow", { tags = { "guide" } }, function()
  set_policy(auth_src, src_policy("kms-src, TCB status OutOfDate only", { allowedTcbStatuses = { "OutOfDate" } }))
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }),
    "KMS is not allowed to bootstrap: boot denied: TCB status is not allowed")
end)

case("there is no unattested mode: an instance without attestation cannot bootstrap", { tags = { "guide" } }, function()
  set_policy(auth_src, allow(src))
  expect_error(rpc(bare, "Onboard.Bootstrap", { domain = var.src_domain }),
    "KMS is not allowed to bootstrap: failed to build local KMS boot info: Failed to get local KMS attestation: ")
end)

-- 5: bootstrap kms-src.

case("5: kms-src bootstraps once allowlisted, finishes and serves GetMeta", { tags = { "guide" } }, function()
  set_policy(auth_src, allow(src))
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "kms-src-bootstrap" }),
    { "ca_pubkey", "k256_pubkey", "attestation" })
  finish(src, { save = "kms-src-finish" })
  wait_ready(src)
  expect_ok(rpc(src, "KMS.GetMeta", nil, { save = "kms-src-meta" }), { "ca_cert", "k256_pubkey", "bootstrap_info" })
end)

local BOOTSTRAPPED = { "5: kms-src bootstraps once allowlisted, finishes and serves GetMeta" }

-- 7.6 B1 and B2: onboarding denied at either end, before it is allowed.

case("B1: kms-dst refuses kms-src while auth-dst leaves kms-src out", { needs = BOOTSTRAPPED, tags = { "guide" } }, function()
  onboard_body = { source_url = source_url(src), domain = var.dst_domain }
  set_policy(auth_src, allow(src, dst))
  set_policy(auth_dst, policy("kms-src's OS image, empty kms.mrAggregated",
    { osImages = { att(src, "os_image_hash") }, kms = { mrAggregated = {} } }))
  expect_error(rpc(dst, "Onboard.Onboard", onboard_body, { save = "kms-dst-onboard-denied" }),
    "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed")
end)

case("B2: kms-src refuses kms-dst as a GetKmsKey caller while auth-src leaves kms-dst out", { needs = BOOTSTRAPPED, tags = { "guide" } }, function()
  onboard_body = { source_url = source_url(src), domain = var.dst_domain }
  set_policy(auth_src, src_policy("kms-src only (kms-dst's OS image, not its MR)"))
  set_policy(auth_dst, allow(src))
  local res = rpc(dst, "Onboard.Onboard", onboard_body, { save = "kms-dst-onboard-denied-by-src" })
  -- kms-src's refusal comes back inside kms-dst's error, as the JSON body it sent.
  expect_error(res, "Failed to onboard: Request failed with status=400 Bad Request, error=")
  expect_error(res, { contains = '"error": "Boot denied: aggregated MR not allowed"' })
end)

case("B2: kms-src refuses a receiver on a device auth-src does not list", { needs = BOOTSTRAPPED, tags = { "guide" }, targets = { "sim" } }, function()
  -- Another machine is an emulator knob (kms-rack2's device), hence sim only.
  deploy(rack2)
  wait_ready(rack2)
  capture_attestation(rack2)
  set_policy(auth_src, src_policy("kms-src and kms-rack2 by MR, only kms-src's device", {
    kms = { mrAggregated = { att(src, "mr_aggregated"), att(rack2, "mr_aggregated") },
      devices = { att(src, "device_id") }, allowAnyDevice = false } }))
  set_policy(auth_dst, allow(src))
  expect_error(rpc(rack2, "Onboard.Onboard", { source_url = source_url(src), domain = "kms-rack2.example.test" }),
    { contains = '"error": "Boot denied: KMS is not allowed to boot on this device"' })
end)

-- 6: onboard kms-dst.

case("6: kms-dst onboards from kms-src once both allow it, finishes and serves GetMeta", { needs = BOOTSTRAPPED, tags = { "guide" } }, function()
  onboard_body = { source_url = source_url(src), domain = var.dst_domain }
  set_policy(auth_src, allow(src, dst))
  set_policy(auth_dst, allow(src, dst))
  local inherited = expect_ok(rpc(dst, "Onboard.Onboard", onboard_body, { save = "kms-dst-onboard" }), { "k256_pubkey" })
  finish(dst, { save = "kms-dst-finish" })
  wait_ready(dst)
  local meta = expect_ok(rpc(dst, "KMS.GetMeta", nil, { save = "kms-dst-meta" }), { "ca_cert", "k256_pubkey" })
  local src_meta = expect_ok(rpc(src, "KMS.GetMeta"), { "k256_pubkey" })
  expect_eq(inherited.k256_pubkey, src_meta.k256_pubkey, "Onboard returns kms-src's k256 key")
  expect_eq(meta.k256_pubkey, src_meta.k256_pubkey, "kms-dst serves the k256 key it inherited")
end)

local ONBOARDED = { "6: kms-dst onboards from kms-src once both allow it, finishes and serves GetMeta" }

-- 7: trusted runtime RPCs.

case("7.1: GetTempCaCert succeeds on both", { needs = ONBOARDED, tags = { "guide" } }, function()
  set_policy(auth_src, allow(src))
  set_policy(auth_dst, allow(dst))
  expect_ok(rpc(src, "KMS.GetTempCaCert", nil, { save = "kms-src-get-temp-ca" }), { "temp_ca_cert", "temp_ca_key", "ca_cert" })
  expect_ok(rpc(dst, "KMS.GetTempCaCert", nil, { save = "kms-dst-get-temp-ca" }), { "temp_ca_cert", "temp_ca_key", "ca_cert" })
end)

case("7.2: GetKmsKey succeeds only for an attested, allowed KMS caller", { needs = BOOTSTRAPPED, tags = { "attested" }, targets = { "sim" } }, function()
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = "" }), "No attestation provided")
  local caller = attested_client(dst, { kms = src })
  set_policy(auth_src, allow(src))
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: aggregated MR not allowed")
  set_policy(auth_src, allow(src, dst))
  expect_ok(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller, save = "kms-src-get-kms-key" }),
    { "temp_ca_key", "keys" })
end)

case("7.3: GetAppKey serves an attested, registered app, and no other", { needs = BOOTSTRAPPED, tags = { "attested" }, targets = { "sim" } }, function()
  local client = attested_client(wallet, { kms = src })
  local other = attested_client(intruder, { kms = src })
  set_policy(auth_src, allow_apps(allow(src), client))
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = other.vm_config }, { client_cert = other }),
    "App not allowed: Boot denied: app not registered")
  expect_ok(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = client.vm_config }, { client_cert = client, save = "kms-src-get-app-key" }),
    { "disk_crypt_key", "env_crypt_key", "k256_key", "ca_cert", "gateway_app_id" })
end)

case("7.3: GetAppKey refuses an app whose OS image the KMS cannot verify", { tags = { "attested" }, targets = { "sim" } }, function()
  -- "valid vm_config" (7.3): with image verification on, the KMS downloads the caller's OS
  -- image and checks it; the policy allows the app, the verification does not.
  deploy(verifier)
  wait_ready(verifier)
  capture_attestation(verifier)
  set_policy(auth_src, allow(src, verifier))
  expect_ok(rpc(verifier, "Onboard.Bootstrap", { domain = "kms-verifier.example.test" }))
  finish(verifier)
  wait_ready(verifier)
  local client = attested_client(legacy, { kms = verifier })
  set_policy(auth_src, allow_apps(allow(src, verifier), client))
  expect_error(rpc(verifier, "KMS.GetAppKey", { api_version = 1, vm_config = client.vm_config }, { client_cert = client }),
    "App not allowed: Failed to verify os image hash: Failed to verify os image hash: Failed to download image: ")
end)

case("7.4: SignCert signs a valid attested app CSR, and no unregistered app's", { needs = BOOTSTRAPPED, tags = { "attested" }, targets = { "sim" } }, function()
  local req = cert_request(wallet, { subject = "wallet.example.test", alt_names = { "wallet.example.test" }, usage_server_auth = true })
  set_policy(auth_src, allow_apps(allow(src), req))
  expect_error(rpc(src, "KMS.SignCert", cert_request(intruder, { subject = "intruder.example.test" })), "Boot denied: app not registered")
  expect_cert_chain(rpc(src, "KMS.SignCert", req, { save = "kms-src-sign-cert" }), src, req)
end)

-- 7.5 and 7.6 C: trusted RPCs fail once the running KMS is no longer allowed.

case("C: trusted RPCs fail on kms-src once auth-src removes it", { needs = BOOTSTRAPPED, tags = { "guide" } }, function()
  set_policy(auth_src, allow(src))
  expect_ok(rpc(src, "KMS.GetTempCaCert"), { "temp_ca_cert" })
  set_policy(auth_src, deny_by_mr(src))
  expect_error(rpc(src, "KMS.GetTempCaCert", nil, { save = "kms-src-get-temp-ca-denied" }), SELF_DENIED)
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = "" }), SELF_DENIED)
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = "" }), SELF_DENIED)
  expect_ok(rpc(src, "KMS.GetMeta"), { "k256_pubkey" }) -- no self-check on GetMeta
end)

case("C: trusted RPCs fail on kms-dst once auth-dst removes it", { needs = ONBOARDED, tags = { "guide" } }, function()
  set_policy(auth_dst, allow(dst))
  expect_ok(rpc(dst, "KMS.GetTempCaCert"), { "temp_ca_cert" })
  set_policy(auth_dst, deny_by_mr(dst))
  expect_error(rpc(dst, "KMS.GetTempCaCert", nil, { save = "kms-dst-get-temp-ca-denied" }), SELF_DENIED)
end)
