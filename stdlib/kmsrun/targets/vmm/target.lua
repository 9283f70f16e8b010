-- The `vmm` target: each KMS is a real dstack-kms in its own CVM, created on a
-- dstack-vmm through its prpc JSON API (kms-protocol.md 10). The operator
-- reaches the KMS (and the CVM's guest agent, for the KMS container's log)
-- through VMM port forwards; a CVM reaches the auth servers and the other CVMs'
-- forwards as network.lua explains (10.0.2.2 by default).
-- Every VM created is removed at the end — also on failure and Ctrl-C — unless
-- keep_vms=true.
local crypto = require "kmsrun.crypto"
local compose = require "kmsrun.targets.vmm.compose"
local create = require "kmsrun.targets.vmm.create"
local evidence = require "kmsrun.targets.vmm.evidence"
local guest_agent = require "kmsrun.targets.vmm.guest_agent"
local network = require "kmsrun.targets.vmm.network"
local session = require "kmsrun.targets.vmm.session"
local vm = require "kmsrun.targets.vmm.vm"
local time = require "kmsrun.time"

local T = {
  name = "vmm",
  registers_removal = true, -- before CreateVm, so an interrupted create is undone too
  summary = "real dstack-kms CVMs on a dstack-vmm",
  -- No T.attester: an attested caller is an app CVM's guest agent, which kmsrun does not deploy.
  attester_note = "an attested caller needs an app CVM (its guest agent makes the RA-TLS key); "
    .. "kmsrun deploys KMS CVMs only — run the app side in a CVM of your own",
  vars = require "kmsrun.targets.vmm.vars",
  -- CVMs boot in minutes; the KMS answers some time after "done".
  wait_defaults = { timeout = 600, interval = 0.5, max_interval = 10 },
  -- The setup boots CVMs (vmm_boot_timeout) and then waits for the KMS (vmm_ready_timeout).
  case_timeout = 1800,
}

local record = evidence.record

local current_session = session.current

-- Removal (idempotent: registered once, before CreateVm; T.remove may call it again) --

local function remove_vm(ctx, h)
  local v = h.vm
  if not v or v.removed or v.kept then return true end
  local s = current_session(ctx)
  if not s then return true end
  if h.log_wanted or ctx:failed() then evidence.fetch_logs(ctx, h) end
  if session.truthy(ctx.vars.keep_vms) then
    v.kept = true
    record(ctx, h)
    ctx:note(string.format("keeping VM %s (%s) of %s (keep_vms=true); remove it with: vmm-cli.py stop %s && vmm-cli.py remove %s",
      v.name, tostring(v.id), h.name, tostring(v.id), tostring(v.id)))
    return true
  end
  local id = v.id
  if not id and v.creating then
    -- CreateVm was sent but its answer never came (Ctrl-C): look the VM up by its unique name.
    for _ = 1, 10 do
      id = vm.find_by_name(s.client, v.name)
      if id then break end
      time.sleep(0.2)
    end
  end
  if not id then
    v.removed = true
    record(ctx, h)
    return true
  end
  local ok, err = vm.remove(s.client, id, { timeout = tonumber(ctx.vars.vmm_remove_timeout) or 120 })
  if not ok then
    v.error = "removal failed: " .. tostring(err)
    record(ctx, h)
    error(string.format("VM %s (%s) of %s could not be removed: %s; remove it by hand (vmm-cli.py stop %s && vmm-cli.py remove %s)",
      v.name, id, h.name, tostring(err), id, id), 0)
  end
  v.removed, v.remove_note = true, err
  record(ctx, h)
  return true
end

-- The target interface ------------------------------------------------------------------

T.auth_url_for_kms = network.auth_url_for_kms
T.auth_bind = network.auth_bind

-- The numeric variables, checked before anything is created.
local NUMBERS = { "vmm_vcpu", "vmm_memory", "vmm_disk", "vmm_boot_timeout", "vmm_ready_timeout", "vmm_log_lines",
  "vmm_timeout", "vmm_remove_timeout" }

local function check_vars(ctx)
  for _, name in ipairs(NUMBERS) do
    local n = tonumber(ctx.vars[name])
    if not n or n <= 0 then
      return nil, string.format("%s must be a positive number, got '%s'", name, tostring(ctx.vars[name]))
    end
  end
  local kp = ctx.vars.vmm_key_provider or "local"
  if kp ~= "local" and kp ~= "none" then
    return nil, string.format("vmm_key_provider must be local or none, got '%s'", tostring(kp))
  end
  return true
end

-- A boot that stops at "requesting app keys" with the local key provider almost
-- always means the VMM runs without its [key_provider] (vmm.toml; the guest asks
-- it for the sealing key, dstack/dstack-util/src/system_setup.rs:2216-2222).
local function key_provider_hint(ctx, info, err)
  if (ctx.vars.vmm_key_provider or "local") ~= "local" then return err end
  local progress = type(info) == "table" and tostring(info.boot_progress) or ""
  if progress:find("requesting app keys", 1, true) or tostring(err):find("sealing key", 1, true) then
    return err .. "; the CVM uses the local key provider (vmm_key_provider=local): enable `[key_provider] "
      .. "enabled = true` in the VMM's vmm.toml and run its key provider, or set vmm_key_provider=none "
      .. "(temporary keys)"
  end
  return err
end

local function boot_failed(ctx, h, err)
  h.log_wanted = true
  h.vm.error = err
  local text = evidence.fetch_logs(ctx, h)
  record(ctx, h)
  local t = evidence.tail(text, 12)
  return nil, string.format("VM %s (%s) of %s: %s%s", h.vm.name, tostring(h.vm.id), h.name, err,
    t ~= "" and ("; last log lines:\n" .. t) or "")
end

local function check_image(ctx, s, h)
  local kms_image = ctx.vars.kms_image
  if not kms_image or kms_image == "" then
    return nil, "the vmm target runs a prebuilt KMS docker image in each CVM: give --var kms_image=REGISTRY/IMAGE:TAG"
  end
  if kms_image:find("[%s'\"]") then return nil, "kms_image must not contain spaces or quotes: " .. kms_image end
  -- Self-authorization (the KMS checking itself and its source) came with dstack-kms 0.5.9.
  local a, b, c = kms_image:match(":v?(%d+)%.(%d+)%.(%d+)$")
  if a and (tonumber(a) * 1e6 + tonumber(b) * 1e3 + tonumber(c)) < 5009 and not ctx.state.kms_image_warned then
    ctx.state.kms_image_warned = true
    ctx:note(string.format("kms_image %s is older than dstack-kms 0.5.9: self-authorization cases need 0.5.9 or newer", kms_image))
  end
  if h.spec.image and h.spec.image ~= s.image then return session.check_image(s, h.spec.image) end
  return s.image
end

function T.deploy(ctx, h)
  local kerr = require("kmsrun.targets.knobs").refuse(h, T.name)
  if kerr then return nil, kerr end
  local okv, verr = check_vars(ctx)
  if not okv then return nil, verr end
  local s, err = session.get(ctx)
  if not s then return nil, err end
  local okn, nerr = network.check(ctx, s.remote, ctx.auths, s.networking)
  if not okn then return nil, nerr end
  T.wait_defaults.timeout = tonumber(ctx.vars.vmm_ready_timeout) or T.wait_defaults.timeout
  local os_image, ierr = check_image(ctx, s, h)
  if not os_image then return nil, ierr end
  local with_agent = session.truthy(ctx.vars.vmm_guest_agent or "true")
  local key_provider = ctx.vars.vmm_key_provider or "local"
  local built = compose.build {
    name = h.name, kms_image = ctx.vars.kms_image, webhook_url = h.auth_url, guest_agent = h.spec.attestation ~= false,
    key_provider = key_provider,
  }
  local v = {
    name = "kmsrun-" .. h.name .. "-" .. crypto.hex(crypto.random(3)), vmm = tostring(s.client):gsub("^VMM ", ""),
    os_image = os_image, kms_image = ctx.vars.kms_image, compose_file = built.compose_file,
    compose_hash = built.compose_hash, app_id = built.app_id, guest_agent = h.spec.attestation ~= false,
    key_provider = key_provider, vmm_version = s.version, vmm_networking = s.networking, boot = {},
  }
  h.vm = v
  ctx.evidence:write("vm/" .. h.name .. ".app-compose.json", built.compose_file)
  -- Some sinks (the auth servers' decision logs) append below logs/ without creating it.
  ctx.evidence:mkdir("logs") -- beneath the output directory: a planted link is refused
  -- Registered once, before CreateVm: a create interrupted before its answer
  -- (Ctrl-C) is still found by its unique name, by this run and by `kmsrun cleanup`.
  ctx:defer(string.format("remove VM %s of %s", v.name, h.name),
    function() return remove_vm(ctx, h) end, { kind = "vm", url = v.vmm, name = v.name })

  local id, p = create.create(ctx, h, v, s.client, { guest_agent = with_agent, record = function() record(ctx, h) end })
  if not id then return nil, p end
  local fwd = ctx.vars.vmm_forward_address or "127.0.0.1"
  v.id, v.host_port, v.agent_port = id, p.kms, p.agent
  v.ports = { string.format("tcp:%s:%d:%d", fwd, p.kms, compose.VM_PORT) }
  if p.agent then v.ports[2] = string.format("tcp:%s:%d:%d", fwd, p.agent, guest_agent.PORT) end
  local host = network.url_host(s.host)
  local guest = network.url_host(ctx.vars.guest_host or "10.0.2.2")
  h.onboard_url = string.format("http://%s:%d", host, p.kms)
  h.runtime_url = string.format("https://%s:%d", host, p.kms)
  if p.agent then v.agent_url = string.format("http://%s:%d", host, p.agent) end
  h.guest = { onboard_url = string.format("http://%s:%d", guest, p.kms), runtime_url = string.format("https://%s:%d", guest, p.kms) }
  record(ctx, h)

  local info, berr, last = vm.follow_boot(s.client, id, {
    timeout = tonumber(ctx.vars.vmm_boot_timeout) or 900,
    on_progress = function(i, elapsed)
      v.status = i.status
      v.boot[#v.boot + 1] = { status = i.status, boot_progress = i.boot_progress, elapsed = elapsed }
      ctx:progress(string.format("%s: VM %s %s, boot progress: %s (%.0f s)", h.name, v.name,
        tostring(i.status), tostring(i.boot_progress), elapsed))
    end,
  })
  if not info then return boot_failed(ctx, h, key_provider_hint(ctx, last, berr)) end
  v.status, v.no_progress = info.status, info.no_progress
  if info.no_progress then
    ctx:progress(string.format("%s: the image reports no boot progress (N/A); readiness is decided by probing the KMS", h.name))
  end
  record(ctx, h)
  return true
end

-- Whether the VM died or the KMS container crash-loops; nil when all looks well.
local function failure(ctx, h)
  local s = current_session(ctx)
  if not (s and h.vm and h.vm.id) or h.vm.removed then return nil end
  local info = vm.info(s.client, h.vm.id)
  if info == false then return "the VMM no longer knows the VM" end
  if type(info) == "table" then
    if info.boot_error and info.boot_error ~= "" then return "boot error: " .. info.boot_error end
    if info.status == "exited" or info.status == "stopped" then return "the VM is " .. info.status end
  end
  local text = evidence.container_log(ctx, h, 200)
  local line, n = guest_agent.crash_loop(text, 2)
  if line then return string.format("the KMS container is crash-looping (%d failed starts; last: %s)", n, line) end
  return nil
end

--- After /finish the same forwarded port speaks TLS; the probe decides when.
-- Here only a VM that died is reported, early and with its log.
function T.runtime_ready(ctx, h)
  local why = failure(ctx, h)
  if why then return boot_failed(ctx, h, why) end
  return true
end

--- Called between readiness probes: a dead VM or a crash-looping KMS fails the
-- wait at once, with the container log's tail, instead of after the timeout.
function T.probe_failed(ctx, h)
  local now = time.now()
  if h.next_health_check and now < h.next_health_check then return nil end
  h.next_health_check = now + 1
  local why = failure(ctx, h)
  if not why then return nil end
  h.vm.error = why
  record(ctx, h)
  return why -- the caller shows log_tail's lines with it
end

function T.remove(ctx, h)
  return remove_vm(ctx, h)
end

function T.log_tail(ctx, h, n)
  if not h.vm then return "" end
  h.log_wanted = true
  return evidence.tail(evidence.fetch_logs(ctx, h), n)
end

return T
