-- KMS self-authorization: the five cases of the test guide
-- (shared/seeds/000_bcfdee5aa4e79d81.txt), end to end, on any target; case 4 also
-- denies by each auth-simple rule, and case 6 (sim only: attested callers) checks the
-- caller checks the self-checks guard, so `kmsrun mutants` catches every switch.
runbook {
  description = "KMS self-authorization and quote-required behaviour: bootstrap self-check, "
    .. "receiver-side source check on onboarding, runtime self-check of trusted RPCs, no no-quote mode",
  tags = { "kms", "self-auth" },
  vars = {
    src_domain = { default = "kms-src.example.test", help = "domain given to kms-src's Bootstrap" },
    dst_domain = { default = "kms-dst.example.test", help = "domain given to kms-dst's Onboard" },
  },
  requires = { targets = { "sim", "local", "vmm" } },
}

-- Topology. Policy responsibilities: auth-src authorizes kms-src itself (bootstrap and
-- trusted-RPC self-checks) and kms-dst (when kms-dst calls GetKmsKey while onboarding);
-- auth-dst decides whether kms-dst accepts kms-src as a source. Both start deny-all.
local auth_src = auth_server("auth-src")
local auth_dst = auth_server("auth-dst")
local src = kms("kms-src", { auth = auth_src })
local dst = kms("kms-dst", { auth = auth_dst })
-- Case 5: an instance with no attestation source at all (no guest agent / simulator).
local bare = kms("kms-noattest", { auth = auth_src, attestation = false })
-- Case 6: an app CVM's identity (sim: derived like the emulator's own; nothing deployed).
local intruder = app("intruder", { compose = "services: {intruder: {image: evil:1}}" })
local legacy = app("legacy", { compose = "services: {legacy: {image: legacy:1}}", image = "dstack-0.5.3-sim" })
-- Case 6 deploys it (sim only): a KMS verifying its callers' OS images (core.image.verify)
-- against an image server that has only its own image.
local verifier = kms("kms-verifier", { auth = auth_src, image = "dstack-0.5.7-sim", verify_images = { "dstack-0.5.7-sim" } })

-- A policy for kms-src's webhook allowing kms-src by MR, with one rule changed.
local function src_rule(name, over)
  local config = { osImages = { "0x" .. src.attestation.os_image_hash },
    kms = { mrAggregated = { "0x" .. src.attestation.mr_aggregated }, devices = {}, allowAnyDevice = true } }
  for k, v in pairs(over) do config[k] = v end
  return policy(name, config)
end

setup("deploy, wait for the onboard endpoints, capture attestation", function()
  deploy(src, dst, bare)
  wait_ready(src, dst, bare)
  capture_attestation(src, dst)
end)

case("bootstrap is denied when the KMS itself is not allowed", function()
  set_policy(auth_src, deny_by_mr(src))
  local res = rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "bootstrap-src-denied" })
  expect_error(res, "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed")
end)

case("bootstrap succeeds after the KMS is whitelisted", { needs = { "bootstrap is denied when the KMS itself is not allowed" } }, function()
  set_policy(auth_src, allow(src))
  local res = rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "bootstrap-src-allowed" })
  expect_ok(res, { "ca_pubkey", "k256_pubkey", "attestation" })
  finish(src)
  wait_ready(src)
  expect_ok(rpc(src, "KMS.GetMeta", nil, { save = "kms-src-meta" }), { "ca_cert", "k256_pubkey" })
end)

case("the receiver rejects onboarding from a denied source KMS", { needs = { "bootstrap succeeds after the KMS is whitelisted" } }, function()
  set_policy(auth_src, allow(src, dst))
  set_policy(auth_dst, deny_by_mr(src))
  local onboard = { source_url = source_url(src), domain = var.dst_domain }
  local denied = rpc(dst, "Onboard.Onboard", onboard, { save = "onboard-dst-denied" })
  expect_error(denied, "Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed")

  set_policy(auth_dst, allow(src))
  local allowed = rpc(dst, "Onboard.Onboard", onboard, { save = "onboard-dst-allowed" })
  local inherited = expect_ok(allowed, { "k256_pubkey" })
  finish(dst)
  wait_ready(dst)
  local meta = expect_ok(rpc(dst, "KMS.GetMeta", nil, { save = "kms-dst-meta" }), { "k256_pubkey" })
  local src_meta = rpc(src, "KMS.GetMeta").body
  expect_eq(inherited.k256_pubkey, src_meta.k256_pubkey, "Onboard returns kms-src's k256 key")
  expect_eq(meta.k256_pubkey, src_meta.k256_pubkey, "kms-dst serves the k256 key it inherited from kms-src")
end)

case("trusted RPCs fail once the running KMS is no longer allowed", { needs = { "bootstrap succeeds after the KMS is whitelisted" } }, function()
  set_policy(auth_src, allow(src, dst))
  expect_ok(rpc(src, "KMS.GetTempCaCert", nil, { save = "get-temp-ca-allowed" }), { "temp_ca_cert", "ca_cert" })
  -- Without an attested client, GetKmsKey passes the self-check and stops at the caller check.
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = "" }), "No attestation provided")

  set_policy(auth_src, deny_by_mr(src))
  local self_denied = "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"
  expect_error(rpc(src, "KMS.GetTempCaCert", nil, { save = "get-temp-ca-denied" }), self_denied)
  -- The guide's extra checks: the self-check runs before any caller check.
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = "" }, { save = "get-kms-key-denied" }), self_denied)
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = "" }, { save = "get-app-key-denied" }), self_denied)
  expect_error(rpc(src, "KMS.SignCert", { api_version = 2, csr = "", signature = "", vm_config = "" },
    { save = "sign-cert-denied" }), self_denied)
  -- GetMeta has no self-check: the KMS still answers it, it just refuses trusted work.
  expect_ok(rpc(src, "KMS.GetMeta"))
  -- Every rule of the policy counts, not only the MR: the OS image, the device, the TCB status.
  local self_check = "KMS self authorization failed: KMS is not allowed: "
  set_policy(auth_src, src_rule("kms-src's MR, no OS image", { osImages = {} }))
  expect_error(rpc(src, "KMS.GetTempCaCert"), self_check .. "OS image is not allowed")
  set_policy(auth_src, src_rule("kms-src's MR, another device only", { kms = {
    mrAggregated = { "0x" .. src.attestation.mr_aggregated }, devices = { "0x" .. string.rep("0", 64) }, allowAnyDevice = false } }))
  expect_error(rpc(src, "KMS.GetTempCaCert"), self_check .. "KMS is not allowed to boot on this device")
  set_policy(auth_src, src_rule("kms-src's MR, TCB status OutOfDate only", { allowedTcbStatuses = { "OutOfDate" } }))
  expect_error(rpc(src, "KMS.GetTempCaCert"), self_check .. "TCB status is not allowed")
end)

case("there is no no-quote mode: attestation is always required", { needs = { "bootstrap succeeds after the KMS is whitelisted" } }, function()
  -- Without an attestation source, bootstrap fails on the KMS's own attestation
  -- before any policy is consulted; it never falls back to an unattested mode.
  local res = rpc(bare, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "bootstrap-noattest" })
  expect_error(res, "KMS is not allowed to bootstrap: failed to build local KMS boot info: Failed to get local KMS attestation: ")
  expect_error(rpc(bare, "Onboard.GetAttestationInfo"), "Failed to get attestation: ")
  -- With attestation available (kms-src, via the simulator or the emulator's guest agent),
  -- bootstrap and the runtime certificate are attestation-backed.
  local boot = rpc(src, "KMS.GetMeta").body.bootstrap_info
  expect(type(boot) == "table" and #boot.attestation > 0, "kms-src's bootstrap carries an attestation",
    type(boot) == "table" and boot.attestation or "no bootstrap_info")
end)

case("with the self-check passing, the caller checks still refuse callers the webhook does not allow",
  { needs = { "bootstrap succeeds after the KMS is whitelisted" }, targets = { "sim" } }, function()
  -- Attested callers (docs/writing-runbooks.md, "Attested callers") exist on sim; the
  -- other targets skip this case. kms-src itself is allowed, the callers are not.
  set_policy(auth_src, allow(src))
  local caller = attested_client(dst, { kms = src })
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: aggregated MR not allowed")
  local app_client = attested_client(intruder, { kms = src })
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = app_client.vm_config }, { client_cert = app_client }),
    "App not allowed: Boot denied: app not registered")
  -- A KMS that verifies OS images refuses a caller whose image it cannot download and
  -- check, even though the policy allows that app.
  deploy(verifier)
  wait_ready(verifier)
  capture_attestation(verifier)
  set_policy(auth_src, allow(src, verifier))
  expect_ok(rpc(verifier, "Onboard.Bootstrap", { domain = "kms-verifier.example.test" }))
  finish(verifier)
  wait_ready(verifier)
  local old_image = attested_client(legacy, { kms = verifier })
  set_policy(auth_src, allow_apps(allow(src, verifier), old_image))
  expect_error(rpc(verifier, "KMS.GetAppKey", { api_version = 1, vm_config = old_image.vm_config }, { client_cert = old_image }),
    "App not allowed: Failed to verify os image hash: Failed to verify os image hash: Failed to download image: ")
end)
