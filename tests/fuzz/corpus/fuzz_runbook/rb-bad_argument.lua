runbook { description = "misuse: wrong argument type, reported at the runbook line" }
local a = auth_server("auth")
local k = kms("k", { auth = a, attestaton = false })
