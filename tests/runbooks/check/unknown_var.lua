-- check: var.X for an undeclared X (found statically, with a suggestion).
runbook {
  description = "check: unknown variable",
  vars = { src_domain = { default = "kms-src.example.test", help = "bootstrap domain" } },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domian }), { any = true })
end)
