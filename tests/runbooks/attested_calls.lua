-- Attested callers on sim (issue 13 points 1-3): GetKmsKey, GetAppKey and SignCert
-- succeed for allowed callers and fail for denied ones; the emulator knobs (device,
-- OS image, TCB status, old-format source certificate) give the denials a reason.
-- tests/e2e/test_attested_calls.sh runs it plain (every case passes) and under each
-- switch it is meant to catch (the cases that depend on the removed check fail).
runbook {
  description = "Attested callers: GetKmsKey, GetAppKey and SignCert success and denial, device, OS image, TCB and old-format-certificate knobs",
  tags = { "kms", "attested" },
  vars = { src_domain = { default = "kms-src.example.test", help = "domain of kms-src" } },
  requires = { targets = { "sim" } },
}

local auth_src = auth_server("auth-src")
local auth_dst = auth_server("auth-dst")
-- kms-src verifies its callers' OS images and can download only its own.
local src = kms("kms-src", { auth = auth_src, image = "dstack-0.5.7-sim", verify_images = { "dstack-0.5.7-sim" } })
-- Another machine, another OS image, an outdated TCB: each one a reason to deny it.
local dst = kms("kms-dst", { auth = auth_dst, device = "rack-2" })
local other_image = kms("kms-other-image", { auth = auth_dst, image = "dstack-0.5.3-sim" })
local stale = kms("kms-stale", { auth = auth_dst, tcb_status = "OutOfDate", advisories = { "INTEL-SA-00837" } })
-- An older KMS as a source: its certificate's attestation has no vm_config.
local old = kms("kms-old", { auth = auth_dst, old_format_cert = true })
local wallet = app("wallet", { compose = "services: {wallet: {image: wallet:1}}" })
local intruder = app("intruder", { compose = "services: {intruder: {image: evil:1}}" })
local legacy = app("legacy", { compose = "services: {legacy: {image: legacy:1}}", image = "dstack-0.5.3-sim" })

-- Device rules: only the device of kms-src (everyone but kms-dst shares it).
local function only_src_device(p)
  p.config.kms.allowAnyDevice = false
  p.config.kms.devices = { "0x" .. src.attestation.device_id:gsub("^0x", "") }
  return p
end

setup("deploy and bootstrap kms-src", function()
  deploy(src, dst, other_image, stale, old)
  wait_ready(src, dst, other_image, stale, old)
  capture_attestation(src, dst, other_image, stale, old)
  set_policy(auth_src, allow(src))
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }))
  finish(src)
  wait_ready(src)
end)

case("GetKmsKey hands the keys to an allowed KMS caller", function()
  set_policy(auth_src, allow(src, dst))
  local caller = attested_client(dst, { kms = src })
  local res = rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller })
  expect_ok(res, { "temp_ca_key", "keys" })
  expect(type(res.server_cert) == "string" and res.server_cert:find("BEGIN CERTIFICATE", 1, true) ~= nil,
    "rpc exposes the server's certificate", res.server_cert)
end)

case("GetKmsKey refuses a KMS caller the policy does not allow", function()
  set_policy(auth_src, allow(src))
  local caller = attested_client(dst) -- its certificate is issued by the KMS it calls
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: aggregated MR not allowed")
end)

case("GetKmsKey refuses a caller without an attestation", function()
  set_policy(auth_src, allow(src, dst))
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = "" }), "No attestation provided")
end)

case("GetKmsKey refuses a KMS caller on a device the policy does not allow", function()
  set_policy(auth_src, only_src_device(allow(src, dst)))
  local caller = attested_client(dst, { kms = src })
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: KMS is not allowed to boot on this device")
end)

case("GetKmsKey refuses a KMS caller whose OS image is not allowed", function()
  -- allow(src) lists src's OS image only; the caller's MR is allowed by hand.
  local p = allow(src)
  p.config.kms.mrAggregated[#p.config.kms.mrAggregated + 1] = "0x" .. other_image.attestation.mr_aggregated:gsub("^0x", "")
  set_policy(auth_src, p)
  local caller = attested_client(other_image, { kms = src })
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: OS image is not allowed")
end)

case("GetKmsKey refuses a KMS caller with an outdated TCB", function()
  set_policy(auth_src, allow(src, stale))
  local caller = attested_client(stale, { kms = src })
  expect_eq(caller.tcb_status, "OutOfDate", "the knob reaches the attestation")
  expect_error(rpc(src, "KMS.GetKmsKey", { vm_config = caller.vm_config }, { client_cert = caller }),
    "Boot denied: TCB status is not allowed")
end)

case("GetAppKey serves an allowed app", function()
  local client = attested_client(wallet)
  set_policy(auth_src, allow_apps(allow(src), client))
  local keys = expect_ok(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = client.vm_config }, { client_cert = client }),
    { "disk_crypt_key", "env_crypt_key", "k256_key", "ca_cert" })
  expect_eq(keys.os_image_hash, client.os_image_hash, "GetAppKey reports the app's OS image")
end)

case("GetAppKey refuses an app the policy does not register", function()
  local client = attested_client(intruder, { kms = src })
  set_policy(auth_src, allow_apps(allow(src), attested_client(wallet, { kms = src })))
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = client.vm_config }, { client_cert = client }),
    "App not allowed: Boot denied: app not registered")
end)

case("GetAppKey refuses an app whose OS image the KMS cannot verify", function()
  -- The policy allows it; kms-src's image server does not have its image.
  local client = attested_client(legacy, { kms = src })
  set_policy(auth_src, allow_apps(allow(src), client))
  expect_error(rpc(src, "KMS.GetAppKey", { api_version = 1, vm_config = client.vm_config }, { client_cert = client }),
    "App not allowed: Failed to verify os image hash: Failed to verify os image hash: Failed to download image: ")
end)

case("SignCert issues a certificate that verifies against the KMS CA", function()
  local req = cert_request(wallet, { subject = "wallet.example.test", alt_names = { "wallet.example.test" },
    usage_server_auth = true, ext_quote = true })
  set_policy(auth_src, allow_apps(allow(src), req))
  expect_cert_chain(rpc(src, "KMS.SignCert", req, { save = "signcert-wallet" }), src, req)
end)

case("SignCert refuses an app the policy does not register", function()
  local req = cert_request(intruder, { subject = "intruder.example.test" })
  set_policy(auth_src, allow_apps(allow(src), cert_request(wallet)))
  expect_error(rpc(src, "KMS.SignCert", req), "Boot denied: app not registered")
end)

case("SignCert refuses a request whose signature does not match", function()
  local req = cert_request(wallet, { confirm = "sign anything:" })
  set_policy(auth_src, allow_apps(allow(src), req))
  expect_error(rpc(src, "KMS.SignCert", req), "Failed to verify csr signature: Invalid confirm word")
end)

case("onboarding from an old-format source fills its empty OS image hash", function()
  -- kms-old's certificate has no vm_config: the receiver checks it with its own OS image.
  set_policy(auth_dst, allow(old))
  expect_ok(rpc(old, "Onboard.Bootstrap", { domain = "kms-old.example.test" }))
  finish(old)
  wait_ready(old)
  local p = allow(old)
  p.config.kms.mrAggregated[#p.config.kms.mrAggregated + 1] = "0x" .. stale.attestation.mr_aggregated:gsub("^0x", "")
  p.config.allowedTcbStatuses = { "UpToDate", "OutOfDate" }
  p.config.allowedAdvisoryIds = { "INTEL-SA-00837" }
  set_policy(auth_dst, p)
  expect_ok(rpc(stale, "Onboard.Onboard", { source_url = source_url(old), domain = "kms-stale.example.test" }),
    { "k256_pubkey" })
end)
