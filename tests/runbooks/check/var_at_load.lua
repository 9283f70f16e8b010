-- check: a variable read before runbook{} declares it (from the header on, var is readable).
local early = var.src_domain
runbook {
  description = "check: var at load time",
  vars = { src_domain = { default = "kms-src.example.test" } },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
local bootstrap = { domain = var.src_domain .. (early and "" or "") }
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", bootstrap))
end)
