-- kmsrun script tests/faults/vmm_create.lua VMM_URL NAME: creates one stopped VM
-- (a KMS compose built by kmsrun.targets.vmm.compose) on a VMM — tests/fake_vmm.lua in the
-- tests — and prints its id. The token comes from DSTACK_VMM_TOKEN.
local client = require "kmsrun.targets.vmm.client"
local compose = require "kmsrun.targets.vmm.compose"
local url, name = ...
local c = assert(client.new(url, { token = os.getenv("DSTACK_VMM_TOKEN") }))
local built = compose.build { name = name, kms_image = "example.test/kms:0", webhook_url = "http://10.0.2.2:1" }
local res, err = c:call("CreateVm", {
  name = name, image = "dstack-0.5.7", compose_file = built.compose_file, vcpu = 1, memory = 1024, disk_size = 1,
  ports = {}, stopped = true,
})
if type(res) ~= "table" or not res.id then io.stderr:write("CreateVm failed: ", tostring(err), "\n") return 1 end
print(res.id)
return 0
