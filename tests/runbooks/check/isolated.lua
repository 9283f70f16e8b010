-- check --isolated: case 2 relies on case 1's finish without needing it, so it
-- passes in a full run and fails with `--case 2` alone. Plain check finds nothing.
runbook { description = "check: a case relying on an earlier one it does not need" }
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap and finish", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", { domain = "kms-src.example.test" }))
  finish(src)
  wait_ready(src)
end)
case("meta", function()
  expect_ok(rpc(src, "KMS.GetMeta"), { "k256_pubkey" })
end)
