-- check: a required variable without a value (no --var given).
runbook {
  description = "check: missing required variable",
  vars = {
    src_domain = { required = true, help = "bootstrap domain" },
  },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }), { any = true })
end)
