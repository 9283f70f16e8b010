-- check: a variable read while loading (values exist only once the run starts).
runbook {
  description = "check: var at load time",
  vars = { src_domain = { default = "kms-src.example.test" } },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
local bootstrap = { domain = var.src_domain }
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap", function()
  expect_ok(rpc(src, "Onboard.Bootstrap", bootstrap))
end)
