runbook { description = "misuse: a typo in a DSL name" }
local a = auth_server("auth")
local k = kms("k", { auth = a })
case("typo", function()
  deploi(k)
end)
