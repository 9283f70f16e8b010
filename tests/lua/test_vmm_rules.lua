-- The vmm target against the fake dstack-vmm holding it to the real VMM's rules
-- (tests/fakes/vmm/api.lua): the port-mapping range, a disabled port mapping,
-- the key provider, images without boot progress, the image choice, a
-- crash-looping KMS container seen through the guest agent, the auth-address
-- checks, and the fake's own API parity (app_id null, Basic with the token).
local T = require "kmsrun.lib.testing"
local H = dofile((os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/fakes/harness.lua")
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local time = require "kmsrun.time"
local crypto = require "kmsrun.crypto"
local client = require "kmsrun.targets.vmm.client"
local compose = require "kmsrun.targets.vmm.compose"
local network = require "kmsrun.targets.vmm.network"
local ports = require "kmsrun.targets.vmm.ports"

local function vmm_args(fake, extra)
  local args = { "--target", "vmm", "--var", "vmm_url=" .. fake.url, "--var", "kms_image=example.test/dstack-kms:ci" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = H.one_kms_runbook()
  return args
end

local function record(r)
  return assert(json.decode(assert(fs.read(r.out .. "/vm/kms-one.json"))))
end

T.test("host ports: the VMM's range is enforced; vmm_port_range keeps kmsrun inside it", function()
  local fake = H.fake_vmm({ "--port-range", "15000-15099" })
  -- kmsrun's default range (1-20000) is wider than this VMM's: almost surely refused, and explained.
  local r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "Port mapping is not allowed for tcp:")
  T.contains(r.output, "vmm_port_range=1-20000")
  r = H.kmsrun(vmm_args(fake, { "--var", "vmm_port_range=15000-15099" }))
  T.eq(r.code, 0, r.output)
  local rec = record(r)
  for _, p in ipairs({ rec.host_port, rec.guest_agent_port }) do T.ok(p >= 15000 and p <= 15099, "in range: " .. p) end
  -- A fixed port outside the range is refused before CreateVm.
  r = H.kmsrun(vmm_args(fake, { "--var", "vmm_port_range=15000-15099", "--var", "vmm_ports=16000" }))
  T.eq(r.code, 3)
  T.contains(r.output, "vmm_ports: 16000 is outside vmm_port_range=15000-15099")
  T.eq(#fake:vms(), 0)
  fake:stop()
end, { timeout = 90 })

T.test("a port the VMM reports as clashing is retried on another one in the range", function()
  local fake = H.fake_vmm({ "--record", H.tmpdir("rec") .. "/requests" })
  local cf = compose.build { name = "holder", kms_image = "x/y:z", webhook_url = "http://10.0.2.2:1" }
  -- A stopped VM holds three of the five ports (nothing listens on them here: only the VMM knows).
  local held = {}
  for i, vm_port in ipairs({ 8000, 8090, 9000 }) do
    held[i] = { protocol = "tcp", host_address = "127.0.0.1", host_port = 15200 + i - 1, vm_port = vm_port }
  end
  assert(fake.client:call("CreateVm", { name = "holder", image = "dstack-0.5.7", compose_file = cf.compose_file,
    ports = held, stopped = true }))
  local r = H.kmsrun(vmm_args(fake, { "--var", "vmm_port_range=15200-15204" }))
  T.eq(r.code, 0, r.output)
  local rec = record(r)
  local got = { math.min(rec.host_port, rec.guest_agent_port), math.max(rec.host_port, rec.guest_agent_port) }
  T.eq(got, { 15203, 15204 }, "the two ports the VMM does not hold")
  fake:stop()
end)

T.test("ports: ranges parse, picks stay inside and above 1023, errors are classified", function()
  local rs = assert(ports.parse_range("1-20000"))
  for _ = 1, 50 do
    local p = assert(ports.pick(rs))
    T.ok(p >= 1024 and p <= 20000, tostring(p))
  end
  T.eq(ports.describe(assert(ports.parse_range("9000-9001,12000"))), "9000-9001,12000")
  T.ok(not ports.parse_range("20-10"))
  T.eq(ports.classify("VMM CreateVm: host port mapping conflicts with VM x: tcp 127.0.0.1:5"), "clash")
  T.eq(ports.classify("VMM CreateVm: Port mapping is not allowed for tcp:40000"), "range")
  T.eq(ports.classify("VMM CreateVm: Port mapping is disabled"), "disabled")
  T.eq(assert(ports.parse_fixed("9301/9401,9302"))[1].agent, 9401)
end)

T.test("a VMM with port mapping disabled is explained before anything is created", function()
  local fake = H.fake_vmm({ "--port-mapping-disabled" })
  local r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "[cvm.port_mapping] enabled = true")
  T.eq(#fake:processes(), 0)
  fake:stop()
end)

T.test("key provider: a VMM without [key_provider] fails at 'requesting app keys' with the hint; none boots", function()
  local fake = H.fake_vmm({ "--no-key-provider" })
  local r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "requesting app keys")
  T.contains(r.output, "[key_provider] enabled = true")
  T.contains(r.output, "vmm_key_provider=none")
  r = H.kmsrun(vmm_args(fake, { "--var", "vmm_key_provider=none" }))
  T.eq(r.code, 0, r.output)
  local cf = assert(json.decode(assert(fs.read(r.out .. "/vm/kms-one.app-compose.json"))))
  T.eq(cf.key_provider, "none")
  T.eq(cf.local_key_provider_enabled, false)
  T.eq(#fake:vms(), 0)
  fake:stop()
end, { timeout = 90 })

T.test("an image without boot progress (N/A) is not waited on: readiness is probed", function()
  local fake = H.fake_vmm({ "--no-boot-progress" })
  local started = time.now()
  local r = H.kmsrun(vmm_args(fake, { "--var", "vmm_boot_timeout=30" }))
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "reports no boot progress (N/A)")
  T.ok(time.now() - started < 25, "did not wait for the boot timeout")
  T.eq(record(r).no_boot_progress, true)
  fake:stop()
end)

T.test("a kms_image tagged below 0.5.9 is flagged (self-authorization needs dstack-kms >= 0.5.9)", function()
  local fake = H.fake_vmm()
  local args = vmm_args(fake)
  for i, a in ipairs(args) do if a:match("^kms_image=") then args[i] = "kms_image=example.test/dstack-kms:0.5.8" end end
  local r = H.kmsrun(args)
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "older than dstack-kms 0.5.9")
  fake:stop()
end)

T.test("the plain dstack-X.Y.Z image is preferred to nvidia and dev ones of the same version", function()
  local fake = H.fake_vmm({ "--image", "dstack-nvidia-0.5.8", "--image", "dstack-dev-0.5.8", "--image", "dstack-0.5.8",
    "--image", "dstack-0.5.7", "--image", "dstack-nvidia-dev-0.5.9" })
  local r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 0, r.output)
  T.eq(record(r).os_image, "dstack-0.5.8")
  fake:stop()
end)

T.test("a crash-looping KMS container fails wait_ready early, with the container log's tail", function()
  local fake = H.fake_vmm({ "--crash-loop", "kms-one" })
  local started = time.now()
  local r = H.kmsrun(vmm_args(fake, { "--var", "vmm_ready_timeout=120" }), { timeout = 100 })
  local took = time.now() - started
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "crash-looping")
  T.contains(r.output, "Error: failed to bind 0.0.0.0:8000", "the container log's tail is shown")
  T.ok(took < 30, string.format("failed early (%.1f s), not after the 120 s timeout", took))
  T.contains(fs.read(r.out .. "/logs/kms-one.log") or "", "Error: failed to bind")
  T.contains(fs.read(r.out .. "/logs/kms-one.serial.log") or "", "Boot Progress: done")
  T.ok(not (fs.read(r.out .. "/logs/kms-one.serial.log") or ""):find("failed to bind", 1, true),
    "container output is not on the serial console")
  T.eq(#fake:vms(), 0)
  fake:stop()
end, { timeout = 120 })

T.test("auth addresses: where the CVM reaches the auth servers, and combinations that cannot work", function()
  local function run(vars) return { vars = vars } end
  local auth = { url = "http://127.0.0.1:4321" }
  T.eq(network.auth_url_for_kms(run {}, auth), "http://10.0.2.2:4321")
  T.eq(network.auth_url_for_kms(run { auth_advertise = "192.0.2.7" }, auth), "http://192.0.2.7:4321")
  T.eq(network.auth_url_for_kms(run {}, { url = "http://0.0.0.0:4321" }), "http://10.0.2.2:4321")
  T.eq(network.auth_url_for_kms(run {}, { url = "http://192.0.2.9:4321" }), "http://192.0.2.9:4321")
  local auths = { { name = "a" } }
  T.ok(network.check(run {}, false, auths), "same host: the default works")
  local ok, err = network.check(run {}, true, auths)
  T.ok(not ok)
  T.contains(err, "auth_advertise=")
  ok, err = network.check(run { auth_advertise = "192.0.2.7" }, false, auths)
  T.ok(not ok, "a loopback-bound server advertised elsewhere")
  T.contains(err, "auth_bind=0.0.0.0")
  ok, err = network.check(run { auth_advertise = "127.0.0.1" }, false, auths)
  T.contains(err or "", "is the CVM itself")
  ok, err = network.check(run { auth_bind = "0.0.0.0", auth_advertise = "192.0.2.7" }, true, auths)
  T.ok(not ok, "remote VMM with loopback forwards")
  T.contains(err, "vmm_forward_address")
  T.ok(network.check(run { auth_bind = "0.0.0.0", auth_advertise = "192.0.2.7", vmm_forward_address = "0.0.0.0" }, true, auths))
end)

T.test("the VMM's version is recorded; bridge networking (GetMeta) without auth_advertise is refused", function()
  local fake = H.fake_vmm({ "--version", "0.5.6" })
  local r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 0, r.output)
  T.eq(record(r).vmm_version, "0.5.6")
  fake:stop()
  fake = H.fake_vmm({ "--networking", "bridge" })
  r = H.kmsrun(vmm_args(fake))
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "bridge networking (GetMeta)")
  T.eq(#fake:processes(), 0)
  fake:stop()
end)

T.test("fake API parity: app_id null, a second port, Basic with the token, removing, is_dev", function()
  local token = "parity-token-" .. crypto.hex(crypto.random(6))
  local fake = H.fake_vmm({ "--token", token, "--image", "dstack-dev-0.5.8", "--removing-delay", "1" }, { token = token })
  local basic = assert(client.new(fake.url, { user = "anything", password = token }))
  local imgs = assert(basic:call("ListImages"))
  T.eq(imgs.images[1].is_dev, true)
  T.eq(assert(basic:call("ListGpus")).gpus, {})
  local cf = compose.build { name = "p", kms_image = "x/y:z", webhook_url = "http://10.0.2.2:1" }
  local p1, p2 = assert(ports.pick({ { from = 15100, to = 15999 } })), assert(ports.pick({ { from = 15100, to = 15999 } }))
  local res = assert(fake.client:call("CreateVm", { name = "parity", image = "dstack-dev-0.5.8", compose_file = cf.compose_file,
    app_id = json.null, ports = { { protocol = "tcp", host_address = "127.0.0.1", host_port = p1, vm_port = 8000 },
      { protocol = "tcp", host_address = "127.0.0.1", host_port = p2, vm_port = 8090 } } }))
  local info = assert(fake.client:call("GetInfo", { id = res.id })).info
  T.eq(info.app_id, cf.app_id, "app_id null: the compose's")
  local _, err = fake.client:call("ResizeVm", { id = res.id, vcpu = 4 })
  T.contains(err, "vm should be stopped before resize")
  assert(fake.client:call("RemoveVm", { id = res.id }))
  T.eq(assert(fake.client:call("GetInfo", { id = res.id })).info.status, "removing")
  assert(fake.client:call("RemoveVm", { id = res.id }), "RemoveVm of a VM being removed is a no-op")
  local deadline = time.now() + 10
  while #fake:vms() > 0 and time.now() < deadline do time.sleep(0.05) end
  T.eq(#fake:vms(), 0)
  fake:stop()
  local strict = H.fake_vmm({ "--token", token, "--bearer-only" }, { token = token })
  local _, berr, code = assert(client.new(strict.url, { user = "anything", password = token })):call("Status")
  T.eq(code, "EAUTH", berr)
  strict:stop()
end)

T.test("cleanup", function() H.cleanup() end)
