-- The vmm target against the fake dstack-vmm (tests/fake_vmm.lua, which boots
-- kmsrun's KMS emulator, not the real KMS): deploy through CreateVm, boot
-- progress, compose hash evidence, early boot errors with the VM's log,
-- credentials, clear errors for missing settings, removal of every VM.
local T = require "kmsrun.lib.testing"
local H = dofile((os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/fakes/harness.lua")
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"

local TOKEN = "vmm-token-" .. crypto.hex(crypto.random(8))

local function vmm_args(fake, extra)
  local args = { "--target", "vmm", "--var", "vmm_url=" .. fake.url, "--var", "kms_image=example.test/dstack-kms:ci" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return args
end

local function with_runbook(args, rb)
  args[#args + 1] = rb or H.one_kms_runbook()
  return args
end

T.test("deploy: CreateVm, boot to done, readiness by probing, evidence, removal", function()
  local fake = H.fake_vmm({ "--token", TOKEN, "--listen-delay", "1" }, { token = TOKEN })
  local r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "vmm_token=" .. TOKEN })))
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "boot progress: done")
  local rec = assert(json.decode(fs.read(r.out .. "/vm/kms-one.json")))
  local compose_file = assert(fs.read(r.out .. "/vm/kms-one.app-compose.json"))
  T.eq(rec.compose_hash, crypto.hex(crypto.sha256(compose_file)), "the hash of the exact bytes sent")
  T.eq(rec.vmm_compose_hash, rec.compose_hash, "the VMM agrees (GetComposeHash)")
  T.eq(rec.app_id, rec.compose_hash:sub(1, 40))
  T.match(rec.vm_id, "^%x+%-")
  T.eq(rec.removed, true)
  local port = math.tointeger(rec.host_port)
  T.eq(rec.onboard_url, "http://127.0.0.1:" .. port)
  T.eq(rec.guest.runtime_url, "https://10.0.2.2:" .. port)
  T.eq(rec.ports[1], "tcp:127.0.0.1:" .. port .. ":8000", "forwards on loopback by default")
  T.ok(port >= 1024 and port <= 20000, "the port is in the VMM's default range, above 1023: " .. port)
  local agent = math.tointeger(rec.guest_agent_port)
  T.eq(rec.ports[2], "tcp:127.0.0.1:" .. tostring(agent) .. ":8090", "the guest agent is forwarded")
  T.eq(rec.boot[#rec.boot].boot_progress, "done")
  -- "done" came before the KMS listened: readiness took more than one probe.
  local report = assert(json.decode(fs.read(r.out .. "/report.json")))
  local waited
  for _, s in ipairs(report.setup.steps) do if s.name:match("^wait_ready") then waited = s.actual end end
  T.ok(waited and not waited:match("after 1 probe"), "wait_ready probed more than once: " .. tostring(waited))
  T.eq(#fake:vms(), 0, "no VM left")
  T.eq(#fake:alive_pids(), 0, "no emulator left")
  T.ok(not fs.exists(r.out .. "/logs/kms-one.log"), "no VM log collected on success")
  fake:stop()
end, { timeout = 60 })

T.test("a boot error fails the deploy at once, with the VM's log; the VM is removed", function()
  local fake = H.fake_vmm({ "--fail-boot", "kms-one" })
  local r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "vmm_boot_timeout=60" })))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "boot failed: failed to start containers")
  T.contains(r.output, "Boot Progress: setting up docker", "the log tail is shown")
  T.contains(fs.read(r.out .. "/logs/kms-one.log") or "", "failed to start containers")
  local rec = assert(json.decode(fs.read(r.out .. "/vm/kms-one.json")))
  T.contains(rec.error, "boot failed")
  T.eq(rec.removed, true)
  T.eq(#fake:vms(), 0)
  fake:stop()
end)

T.test("wrong or missing credentials: HTTP 401 explained, the token never printed", function()
  local fake = H.fake_vmm({ "--token", TOKEN }, { token = TOKEN })
  local wrong = "wrong-token-" .. crypto.hex(crypto.random(8))
  local r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "vmm_token=" .. wrong })))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "HTTP 401")
  T.contains(r.output, "bearer token (vmm_token / DSTACK_VMM_TOKEN) was not accepted")
  T.ok(not r.output:find(wrong, 1, true), "the token is not in the console output")
  T.ok(not H.read_tree(r.out):find(wrong, 1, true), "nor in the output directory")
  r = H.kmsrun(with_runbook(vmm_args(fake)))
  T.eq(r.code, 3)
  T.contains(r.output, "DSTACK_VMM_TOKEN")
  fake:stop()
end)

T.test("the address and credentials come from DSTACK_VMM_* when no var is given", function()
  local fake = H.fake_vmm({ "--user", "vmm-operator", "--password", "vmm-password-123" },
    { user = "vmm-operator", password = "vmm-password-123" })
  local r = H.kmsrun({ "--target", "vmm", "--var", "kms_image=example.test/dstack-kms:ci", H.one_kms_runbook() }, {
    env = { DSTACK_VMM_URL = fake.url, DSTACK_VMM_AUTH_USER = "vmm-operator", DSTACK_VMM_AUTH_PASSWORD = "vmm-password-123" },
  })
  T.eq(r.code, 0, r.output)
  local all = H.read_tree(r.out) .. r.output
  for _, s in ipairs({ "vmm-password-123", "vmm-operator", crypto.base64("vmm-operator:vmm-password-123") }) do
    T.ok(not all:find(s, 1, true), s .. " appears in the output")
  end
  T.eq(#fake:vms(), 0)
  fake:stop()
end)

T.test("missing settings are explained before anything is created", function()
  local fake = H.fake_vmm()
  local r = H.kmsrun(with_runbook({ "--target", "vmm", "--var", "kms_image=x/y:z" }), { env = { DSTACK_VMM_URL = false } })
  T.eq(r.code, 3)
  T.contains(r.output, "no VMM address: give --var vmm_url=")
  r = H.kmsrun(with_runbook({ "--target", "vmm", "--var", "vmm_url=" .. fake.url }))
  T.eq(r.code, 2, "a usage error, before anything starts")
  T.contains(r.output, "variable 'kms_image' is required: give --var kms_image=VALUE")
  r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "vmm_image=dstack-9.9.9" })))
  T.eq(r.code, 3)
  T.contains(r.output, "the VMM has no OS image 'dstack-9.9.9' (it offers: dstack-0.5.7)")
  r = H.kmsrun(with_runbook({ "--target", "vmm", "--var", "vmm_url=ftp://127.0.0.1:1", "--var", "kms_image=x/y:z" }))
  T.contains(r.output, "must start with http://, https:// or unix:")
  T.eq(#fake:processes(), 0, "nothing was booted")
  fake:stop()
end)

T.test("a host port the VMM refuses is reported; keep_vms leaves the VM for the operator", function()
  local fake = H.fake_vmm()
  local r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "keep_vms=true" })))
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "keep_vms=true")
  local kept = fake:vms()
  T.eq(#kept, 1, "the VM was kept")
  local port = math.tointeger(kept[1].configuration.ports[1].host_port)
  -- The same host port again: the VMM reports the clash; a fixed port is not retried.
  r = H.kmsrun(with_runbook(vmm_args(fake, { "--var", "vmm_ports=" .. port })))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "host port mapping conflicts with VM " .. kept[1].id)
  assert(fake.client:call("StopVm", { id = kept[1].id }))
  assert(fake.client:call("RemoveVm", { id = kept[1].id }))
  local deadline = require("kmsrun.time").now() + 10
  while #fake:vms() > 0 and require("kmsrun.time").now() < deadline do require("kmsrun.time").sleep(0.05) end
  T.eq(#fake:vms(), 0)
  fake:stop()
end)

T.test("an instance without attestation boots without the guest-agent socket", function()
  local fake = H.fake_vmm()
  local r = H.kmsrun(with_runbook(vmm_args(fake), H.one_kms_runbook { attestation = false }))
  T.eq(r.code, 0, r.output)
  local compose_file = assert(fs.read(r.out .. "/vm/kms-one.app-compose.json"))
  T.ok(not compose_file:find("dstack.sock", 1, true), "no guest-agent volume")
  fake:stop()
end)

T.test("cleanup", function() H.cleanup() end)
