-- CreateVm for one KMS: the VmConfiguration (dstack/vmm/rpc/proto/vmm_rpc.proto),
-- the host ports inside the VMM's allowed range, the GetComposeHash cross-check,
-- and a retry on another port when the VMM reports a clash.
local json = require "kmsrun.lib.json"
local compose = require "kmsrun.targets.vmm.compose"
local guest_agent = require "kmsrun.targets.vmm.guest_agent"
local ports = require "kmsrun.targets.vmm.ports"

local M = {}

M.RETRIES = 5

local function forward(address, host_port, vm_port)
  return json.ordered { "protocol", "tcp", "host_address", address, "host_port", host_port, "vm_port", vm_port }
end

--- The VmConfiguration. p = {kms =, agent = (nil: no guest-agent forward)}.
function M.config(ctx, v, p)
  local address = ctx.vars.vmm_forward_address or "127.0.0.1"
  local list = json.array { forward(address, p.kms, compose.VM_PORT) }
  if p.agent then list[#list + 1] = forward(address, p.agent, guest_agent.PORT) end
  return json.ordered {
    "name", v.name,
    "image", v.os_image,
    "compose_file", v.compose_file,
    "vcpu", math.tointeger(tonumber(ctx.vars.vmm_vcpu)) or 2,
    "memory", math.tointeger(tonumber(ctx.vars.vmm_memory)) or 4096,
    "disk_size", math.tointeger(tonumber(ctx.vars.vmm_disk)) or 20,
    "ports", list,
    "kms_urls", json.array(),
    "gateway_urls", json.array(),
    "hugepages", false,
    "pin_numa", false,
    "stopped", false,
  }
end

local function index_of(ctx, h)
  for i, k in ipairs(ctx.kmss) do if k == h then return i end end
  return nil
end

--- The host ports of attempt n: {kms =, agent =}, fixed (from vmm_ports) or
-- picked in vmm_port_range. Returns p, fixed or nil, err.
function M.ports_for(ctx, h, ranges, attempt, want_agent)
  local fixed, err = ports.parse_fixed(ctx.vars.vmm_ports)
  if not fixed then return nil, err end
  local p = {}
  if #fixed > 0 then
    if attempt > 1 then return nil end
    local i = index_of(ctx, h)
    local f = fixed[i]
    if not f then return nil, string.format("vmm_ports lists %d port(s) but %s is KMS number %d", #fixed, h.name, i or 0) end
    p.kms, p.agent = f.kms, f.agent
  end
  local function pick()
    local port, perr = ports.pick(ranges)
    if not port then error(perr, 0) end
    return port
  end
  local ok, perr = pcall(function()
    p.kms = p.kms or pick()
    if want_agent then p.agent = p.agent or pick() else p.agent = nil end
  end)
  if not ok then return nil, perr end
  for _, port in ipairs({ p.kms, p.agent }) do
    if not ports.contains(ranges, port) then
      return nil, string.format("vmm_ports: %d is outside vmm_port_range=%s (the VMM's [cvm.port_mapping] range)",
        port, ports.describe(ranges))
    end
  end
  return p, #fixed > 0
end

--- GetComposeHash (cross-check) then CreateVm; retries a port clash with other
-- ports. record() is called whenever v changes. Returns id, p or nil, err.
function M.create(ctx, h, v, c, opts)
  local ranges, rerr = ports.parse_range(ctx.vars.vmm_port_range or ports.DEFAULT_RANGE)
  if not ranges then return nil, rerr end
  local err
  for attempt = 1, M.RETRIES do
    local p, perr = M.ports_for(ctx, h, ranges, attempt, opts.guest_agent)
    if not p then return nil, perr or string.format("no usable host port: %s", tostring(err)) end
    local fixed = perr
    local config = M.config(ctx, v, p)
    if attempt == 1 then
      local hres, herr, hcode = c:call("GetComposeHash", config)
      if type(hres) == "table" then
        v.vmm_compose_hash = hres.hash
        if hres.hash ~= v.compose_hash then
          opts.record()
          return nil, string.format("the VMM hashes the compose file to %s, kmsrun computed %s", tostring(hres.hash), v.compose_hash)
        end
      elseif hcode ~= "EVMM" then
        return nil, herr
      end
    end
    v.creating = true
    local res, cerr = c:call("CreateVm", config)
    v.creating = false
    if type(res) == "table" and res.id then return res.id, p end
    err = cerr or "CreateVm returned no id"
    local kind = ports.classify(err)
    if fixed or kind ~= "clash" then
      v.error = ports.explain(kind, err, ranges)
      opts.record()
      return nil, string.format("CreateVm for %s failed: %s", h.name, v.error)
    end
    ports.release({ p.kms, p.agent }, ports.clashing_port(err))
  end
  return nil, string.format("CreateVm for %s: no usable host port after %d tries: %s", h.name, M.RETRIES, tostring(err))
end

return M
