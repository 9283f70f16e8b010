-- plan: a secret variable's value never appears in the plan, neither in the
-- variables nor inside the steps that use it. A clean runbook otherwise.
runbook {
  description = "plan: secret variables stay hidden",
  vars = {
    token = { required = true, secret = true, help = "a credential" },
    domain = { default = "kms-src.example.test", help = "bootstrap domain" },
  },
}
local auth = auth_server("auth-src")
local src = kms("kms-src", { auth = auth })
setup(function()
  deploy(src)
  wait_ready(src)
end)
case("bootstrap with a credential", function()
  local res = rpc(src, "Onboard.Bootstrap", { domain = var.domain .. "-" .. var.token })
  expect_error(res, { any = true })
  log("used token %s", var.token)
end)
