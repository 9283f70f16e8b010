-- tests/security/test_secret_sinks.lua: a runbook that pushes each form of each kind
-- of secret into every sink a runbook can reach: print, log (terminal, report notes,
-- events), step names, save (evidence JSON), an expectation's expected/actual
-- (report, junit, terminal) and an error message (report, junit, stderr). The forms
-- come in as plain variables joined by "|"; the secrets themselves as secret
-- variables, and one more key from an RPC answer (a fake KMS the test serves).
runbook {
  description = "TEST: secrets in every sink",
  requires = { targets = { "sim" } },
  vars = {
    key = { required = true, secret = true, help = "a PEM private key" },
    token = { required = true, secret = true, help = "a bearer token" },
    forms = { required = true, help = "every form of both, joined by |" },
    kms_url = { required = true, help = "the fake KMS answering with a key and its forms" },
  },
}

local auth = auth_server("auth-unused")
local fake = kms("fake-kms", { auth = auth })

local function split(s)
  local list = {}
  for f in s:gmatch("[^|]+") do list[#list + 1] = f end
  return list
end

local function spill(list)
  for i, f in ipairs(list) do
    print(f)
    log("form %d: %s", i, f)
    step("step " .. f, function() end)
  end
  save("spill", { list = list, joined = table.concat(list, " ") })
end

setup("point the handle at the fake KMS", function()
  fake.deployed, fake.mode = true, "onboard"
  fake.onboard_url, fake.runtime_url = var.kms_url, var.kms_url
  fake.guest = { onboard_url = var.kms_url, runtime_url = var.kms_url }
end)

case("secret variables in every sink", function()
  spill({ var.key, var.token })
  spill(split(var.forms))
end)

case("an RPC-returned key in every sink", function()
  local res = rpc(fake, "Onboard.GetAttestationInfo", nil, { save = "answer" })
  spill({ res.body.temp_ca_key })
  spill(res.body.forms)
  expect_eq(res.body.temp_ca_key, table.concat(res.body.forms, "|"), "the key against its forms")
end)

case("an error holding them all", function()
  error("boom " .. var.key .. var.forms .. " end")
end)
