-- The happy path of KMS onboarding, end to end, on any target: bootstrap kms-src,
-- finish it, onboard kms-dst from it, finish kms-dst, then probe GetMeta and
-- GetTempCaCert on both. Every auth server allows exactly what the step at hand
-- needs and nothing more, so a missing allowance fails the step that needs it.
runbook {
  description = "Onboarding happy path: bootstrap kms-src, onboard kms-dst from it, both serve "
    .. "GetMeta and GetTempCaCert with the same k256 key",
  tags = { "kms", "onboard", "happy-path" },
  vars = {
    src_domain = { default = "kms-src.example.test", help = "domain given to kms-src's Bootstrap" },
    dst_domain = { default = "kms-dst.example.test", help = "domain given to kms-dst's Onboard" },
  },
  requires = { targets = { "sim", "local", "vmm" } },
}

-- Who asks which auth server (docs/writing-runbooks.md, "Which auth server decides what"):
--   auth-src is kms-src's webhook: kms-src's own self-checks (Bootstrap, and the trusted
--     RPCs GetTempCaCert / GetKmsKey it serves to kms-dst while kms-dst onboards) and the
--     caller check of kms-dst in GetKmsKey.
--   auth-dst is kms-dst's webhook: the receiver-side check of kms-src during Onboard, and
--     kms-dst's own self-check once it serves trusted RPCs (GetTempCaCert) after finish.
-- Both start from the deny-all baseline.
local auth_src = auth_server("auth-src")
local auth_dst = auth_server("auth-dst")
local src = kms("kms-src", { auth = auth_src })
local dst = kms("kms-dst", { auth = auth_dst })

setup("deploy both, wait for their onboard endpoints, capture attestation", function()
  deploy(src, dst)
  wait_ready(src, dst)
  capture_attestation(src, dst)
end)

case("kms-src bootstraps and serves", function()
  -- Bootstrap's self-check asks auth-src about kms-src itself.
  set_policy(auth_src, allow(src))
  local boot = rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }, { save = "bootstrap-src" })
  expect_ok(boot, { "ca_pubkey", "k256_pubkey", "attestation" })
  finish(src)
  wait_ready(src)
end)

case("kms-dst onboards from kms-src and serves", { needs = { "kms-src bootstraps and serves" } }, function()
  -- kms-src checks itself (GetTempCaCert, GetKmsKey) and kms-dst (GetKmsKey's caller check).
  set_policy(auth_src, allow(src, dst))
  -- kms-dst checks that kms-src is an acceptable source (receiver-side check).
  set_policy(auth_dst, allow(src))
  local onboard = rpc(dst, "Onboard.Onboard", { source_url = source_url(src), domain = var.dst_domain },
    { save = "onboard-dst" })
  local inherited = expect_ok(onboard, { "k256_pubkey" })
  finish(dst)
  wait_ready(dst)
  local src_meta = expect_ok(rpc(src, "KMS.GetMeta"), { "k256_pubkey" })
  expect_eq(inherited.k256_pubkey, src_meta.k256_pubkey, "Onboard returns kms-src's k256 key")
end)

case("both serve GetMeta and GetTempCaCert", { needs = { "kms-dst onboards from kms-src and serves" } }, function()
  -- From now on each KMS only needs its own webhook to allow itself (runtime self-check).
  set_policy(auth_src, allow(src))
  set_policy(auth_dst, allow(dst))
  local src_meta = expect_ok(rpc(src, "KMS.GetMeta", nil, { save = "kms-src-meta" }), { "ca_cert", "k256_pubkey" })
  local dst_meta = expect_ok(rpc(dst, "KMS.GetMeta", nil, { save = "kms-dst-meta" }), { "ca_cert", "k256_pubkey" })
  expect_eq(dst_meta.k256_pubkey, src_meta.k256_pubkey, "kms-dst serves the k256 key it inherited from kms-src")
  expect_ok(rpc(src, "KMS.GetTempCaCert", nil, { save = "kms-src-temp-ca" }), { "temp_ca_cert", "temp_ca_key", "ca_cert" })
  expect_ok(rpc(dst, "KMS.GetTempCaCert", nil, { save = "kms-dst-temp-ca" }), { "temp_ca_cert", "temp_ca_key", "ca_cert" })
end)
