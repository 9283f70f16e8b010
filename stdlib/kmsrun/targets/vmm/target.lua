-- The `vmm` target: each KMS is a real dstack-kms in its own CVM, created on a
-- dstack-vmm through its prpc JSON API (kms-protocol.md 10). The operator
-- reaches the KMS through a VMM port forward (host:port); another CVM reaches it
-- (and the auth servers) through QEMU's user-mode gateway 10.0.2.2.
-- Every VM created is removed at the end — also on failure and Ctrl-C — unless
-- keep_vms=true.
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local tail = require("kmsrun.targets.registry").tail
local json = require "kmsrun.lib.json"
local compose = require "kmsrun.targets.vmm.compose"
local session = require "kmsrun.targets.vmm.session"
local vm = require "kmsrun.targets.vmm.vm"
local hostport = require "kmsrun.targets.hostport"
local time = require "kmsrun.time"

local T = {
  name = "vmm",
  registers_removal = true, -- before CreateVm, so an interrupted create is undone too
  summary = "real dstack-kms CVMs on a dstack-vmm",
  -- No T.attester: an attested caller is an app CVM's guest agent, which kmsrun does not deploy.
  attester_note = "an attested caller needs an app CVM (its guest agent makes the RA-TLS key); "
    .. "kmsrun deploys KMS CVMs only — run the app side in a CVM of your own",
  vars = {
    vmm_url = { default = "", help = "dstack-vmm address: http://HOST:PORT, https://..., unix:/path/vmm.sock (default $DSTACK_VMM_URL) (vmm target)" },
    vmm_token = { default = "", secret = true, help = "VMM bearer token (default $DSTACK_VMM_TOKEN) (vmm target)" },
    vmm_auth_user = { default = "", secret = true, help = "VMM Basic auth user (default $DSTACK_VMM_AUTH_USER) (vmm target)" },
    vmm_auth_password = { default = "", secret = true, help = "VMM Basic auth password (default $DSTACK_VMM_AUTH_PASSWORD) (vmm target)" },
    vmm_tls_insecure = { default = "false", help = "skip TLS verification of an https:// VMM (vmm target)" },
    vmm_ca_file = { default = "", help = "PEM CA file to verify an https:// VMM with (vmm target)" },
    vmm_image = { default = "", help = "OS image of the KMS CVMs (default: the newest ListImages offers) (vmm target)" },
    kms_image = { required = true, help = "prebuilt KMS docker image to run in the CVMs, e.g. REGISTRY/dstack-kms:TAG (vmm target)" },
    guest_host = { default = "10.0.2.2", help = "the host as seen from inside a CVM (QEMU user-mode gateway) (vmm target)" },
    vmm_host = { default = "", help = "host the forwarded KMS ports are reached on (default: the VMM URL's host, 127.0.0.1 for unix:) (vmm target)" },
    vmm_ports = { default = "", help = "host ports to forward, one per KMS in declaration order, comma separated (default: free ports picked here) (vmm target)" },
    vmm_forward_address = { default = "0.0.0.0", help = "host address of the port forwards (vmm target)" },
    vmm_vcpu = { default = "2", help = "vCPUs per KMS CVM (vmm target)" },
    vmm_memory = { default = "4096", help = "memory per KMS CVM, MiB (vmm target)" },
    vmm_disk = { default = "20", help = "disk per KMS CVM, GiB (vmm target)" },
    vmm_boot_timeout = { default = "900", help = "seconds for a CVM to reach boot progress 'done' (vmm target)" },
    vmm_ready_timeout = { default = "600", help = "default wait_ready timeout, seconds (vmm target)" },
    vmm_log_lines = { default = "2000", help = "lines of a CVM's log kept as evidence on failure (vmm target)" },
    keep_vms = { default = "false", help = "keep the CVMs at the end instead of removing them (vmm target)" },
  },
  -- CVMs boot in minutes; the KMS answers some time after "done".
  wait_defaults = { timeout = 600, interval = 0.5, max_interval = 10 },
  -- The setup boots CVMs (vmm_boot_timeout) and then waits for the KMS (vmm_ready_timeout).
  case_timeout = 1800,
}

local PORT_RETRIES = 5

local function url_host(host)
  return host:find(":", 1, true) and ("[" .. host .. "]") or host
end

-- Evidence ------------------------------------------------------------------------

local function record(run, h)
  local v = h.vm
  run.evidence:json("vm/" .. h.name .. ".json", {
    kms = h.name, vm_name = v.name, vm_id = v.id, vmm = v.vmm, os_image = v.os_image, kms_image = v.kms_image,
    compose_hash = v.compose_hash, app_id = v.app_id, vmm_compose_hash = v.vmm_compose_hash,
    guest_agent = v.guest_agent, host_port = v.host_port, ports = v.ports and json.array(v.ports) or nil,
    onboard_url = h.onboard_url, runtime_url = h.runtime_url, guest = h.guest,
    boot = json.array(v.boot), boot_error = v.boot_error, status = v.status,
    removed = v.removed or false, kept = v.kept or false, remove_note = v.remove_note, error = v.error,
  })
end

-- Fetches the VM's log into evidence logs/<name>.log; returns the text or nil.
local function fetch_logs(run, h)
  local v, s = h.vm, run.vmm_session_state and run.vmm_session_state.session
  if not (v and v.id and s) or v.removed then return h.log_text end
  local text, err = s.client:logs(v.id, { lines = tonumber(run.vars.vmm_log_lines) or 2000 })
  if not text then text = (h.log_text or "") .. "\n[kmsrun: could not fetch the VM log: " .. tostring(err) .. "]\n" end
  h.log_text = text
  h.log_path = run.evidence:write("logs/" .. h.name .. ".log", text)
  return text
end

local function run_failed(run)
  if run.interrupted or run.error then return true end
  if run.setup_case and run.setup_case.status and run.setup_case.status ~= "passed" then return true end
  for _, c in ipairs(run.selected_cases or {}) do
    if c.status and c.status ~= "passed" and c.status ~= "skipped" then return true end
  end
  return false
end

-- Removal (idempotent: registered at creation, and called again by the runner) ------

local function remove_vm(run, h)
  local v = h.vm
  if not v or v.removed or v.kept then return true end
  local s = run.vmm_session_state and run.vmm_session_state.session
  if not s then return true end
  if h.log_wanted or run_failed(run) then fetch_logs(run, h) end
  if session.truthy(run.vars.keep_vms) then
    v.kept = true
    record(run, h)
    run:note(string.format("keeping VM %s (%s) of %s (keep_vms=true); remove it with: vmm-cli.py remove %s",
      v.name, tostring(v.id), h.name, tostring(v.id)))
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
    record(run, h)
    return true
  end
  local ok, err = vm.remove(s.client, id)
  if not ok then
    v.error = "removal failed: " .. tostring(err)
    record(run, h)
    error(string.format("VM %s (%s) of %s could not be removed: %s; remove it by hand (vmm-cli.py remove %s)",
      v.name, id, h.name, tostring(err), id), 0)
  end
  v.removed, v.remove_note = true, err
  record(run, h)
  return true
end

-- The target interface ------------------------------------------------------------------

local function is_loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.") ~= nil
end

--- The auth server as reachable from inside a CVM: a loopback address becomes
-- the QEMU gateway (guest_host); anything else is assumed reachable as is.
function T.auth_url_for_kms(run, auth)
  local scheme, host, rest = auth.url:match("^(https?://)%[?([^%]/]-)%]?(:%d+.*)$")
  if not scheme then scheme, host, rest = auth.url:match("^(https?://)([^:/]+)(.*)$") end
  if host and is_loopback(host) then
    return scheme .. url_host(run.vars.guest_host or "10.0.2.2") .. rest
  end
  return auth.url
end

local function host_port_for(run, h, attempt)
  local wanted, err = hostport.parse_list(run.vars.vmm_ports, "vmm_ports")
  if not wanted then return nil, err end
  if #wanted > 0 then
    if attempt > 1 then return nil end
    for i, k in ipairs(run.runbook.kmss) do
      if k == h then
        if not wanted[i] then
          return nil, string.format("vmm_ports lists %d port(s) but %s is KMS number %d", #wanted, h.name, i)
        end
        return wanted[i], nil, true
      end
    end
  end
  return hostport.free()
end

local function port_conflict(err)
  err = tostring(err)
  return err:find("conflicts with VM", 1, true) or err:find("duplicate host port", 1, true)
    or err:find("ddress already in use", 1, true)
end

-- The numeric variables, checked before anything is created.
local NUMBERS = { "vmm_vcpu", "vmm_memory", "vmm_disk", "vmm_boot_timeout", "vmm_ready_timeout", "vmm_log_lines" }

local function check_numbers(run)
  for _, name in ipairs(NUMBERS) do
    local n = tonumber(run.vars[name])
    if not n or n <= 0 then
      return nil, string.format("%s must be a positive number, got '%s'", name, tostring(run.vars[name]))
    end
  end
  return true
end

local function vm_config(run, v, port)
  return json.ordered {
    "name", v.name,
    "image", v.os_image,
    "compose_file", v.compose_file,
    "vcpu", math.tointeger(tonumber(run.vars.vmm_vcpu)) or 2,
    "memory", math.tointeger(tonumber(run.vars.vmm_memory)) or 4096,
    "disk_size", math.tointeger(tonumber(run.vars.vmm_disk)) or 20,
    "ports", json.array { json.ordered {
      "protocol", "tcp", "host_address", run.vars.vmm_forward_address or "0.0.0.0",
      "host_port", port, "vm_port", compose.VM_PORT,
    } },
    "kms_urls", json.array(),
    "gateway_urls", json.array(),
    "hugepages", false,
    "pin_numa", false,
    "stopped", false,
  }
end

local function boot_failed(run, h, err)
  h.log_wanted = true
  h.vm.error = err
  local text = fetch_logs(run, h)
  record(run, h)
  local t = tail(text, 12)
  return nil, string.format("VM %s (%s) of %s: %s%s", h.vm.name, tostring(h.vm.id), h.name, err,
    t ~= "" and ("; last log lines:\n" .. t) or "")
end

-- GetComposeHash (cross-check), then CreateVm, retrying with another free host
-- port when the VMM reports a port clash. Returns id, port or nil, err.
local function create(run, h, v, c)
  local err
  for attempt = 1, PORT_RETRIES do
    local port, perr, fixed = host_port_for(run, h, attempt)
    if not port then return nil, perr or string.format("no usable host port: %s", tostring(err)) end
    local config = vm_config(run, v, port)
    if attempt == 1 then
      local hres, herr, hcode = c:call("GetComposeHash", config)
      if type(hres) == "table" then
        v.vmm_compose_hash = hres.hash
        if hres.hash ~= v.compose_hash then
          record(run, h)
          return nil, string.format("the VMM hashes the compose file to %s, kmsrun computed %s", tostring(hres.hash), v.compose_hash)
        end
      elseif hcode ~= "EVMM" then
        return nil, herr
      end
    end
    v.creating = true
    local res, cerr = c:call("CreateVm", config)
    v.creating = false
    if type(res) == "table" and res.id then
      v.id = res.id
      return res.id, port
    end
    err = cerr or "CreateVm returned no id"
    if fixed or not port_conflict(err) then
      v.error = err
      record(run, h)
      return nil, string.format("CreateVm for %s failed: %s", h.name, err)
    end
  end
  return nil, string.format("CreateVm for %s: no usable host port after %d tries: %s", h.name, PORT_RETRIES, tostring(err))
end

function T.deploy(run, h)
  local kerr = require("kmsrun.targets.knobs").refuse(h, T.name)
  if kerr then return nil, kerr end
  local okn, nerr = check_numbers(run)
  if not okn then return nil, nerr end
  local s, err = session.get(run)
  if not s then return nil, err end
  T.wait_defaults.timeout = tonumber(run.vars.vmm_ready_timeout) or T.wait_defaults.timeout
  local kms_image = run.vars.kms_image
  if not kms_image or kms_image == "" then
    return nil, "the vmm target runs a prebuilt KMS docker image in each CVM: give --var kms_image=REGISTRY/IMAGE:TAG"
  end
  if kms_image:find("[%s'\"]") then return nil, "kms_image must not contain spaces or quotes: " .. kms_image end
  local os_image = s.image
  if h.spec.image and h.spec.image ~= s.image then
    local picked, ierr = session.check_image(s, h.spec.image)
    if not picked then return nil, ierr end
    os_image = picked
  end
  local built = compose.build {
    name = h.name, kms_image = kms_image, webhook_url = h.auth_url, guest_agent = h.spec.attestation ~= false,
  }
  local v = {
    name = "kmsrun-" .. h.name .. "-" .. crypto.hex(crypto.random(3)), vmm = tostring(s.client):gsub("^VMM ", ""),
    os_image = os_image, kms_image = kms_image, compose_file = built.compose_file,
    compose_hash = built.compose_hash, app_id = built.app_id, guest_agent = h.spec.attestation ~= false,
    boot = {},
  }
  h.vm = v
  run.evidence:write("vm/" .. h.name .. ".app-compose.json", built.compose_file)
  -- Some sinks (the auth servers' decision logs) append below logs/ without creating it.
  fs.mkdir(run.evidence:path("logs"), { mode = 448 })
  -- Registered before CreateVm: a create interrupted before its answer (Ctrl-C) is
  -- still found by its unique name and removed. Removal is idempotent.
  run:defer(string.format("remove VM %s of %s if its creation was interrupted", v.name, h.name),
    function() return remove_vm(run, h) end, { kind = "vm", url = v.vmm, name = v.name })

  local id, port = create(run, h, v, s.client)
  if not id then return nil, port end
  run:defer(string.format("remove VM %s (%s) of %s", v.name, id, h.name),
    function() return remove_vm(run, h) end, { kind = "vm", url = v.vmm, id = id, name = v.name })
  v.id, v.host_port, v.ports = id, port, { string.format("tcp:%s:%d:%d", run.vars.vmm_forward_address or "0.0.0.0", port, compose.VM_PORT) }
  local host = url_host(s.host)
  local guest = url_host(run.vars.guest_host or "10.0.2.2")
  h.onboard_url = string.format("http://%s:%d", host, port)
  h.runtime_url = string.format("https://%s:%d", host, port)
  h.guest = { onboard_url = string.format("http://%s:%d", guest, port), runtime_url = string.format("https://%s:%d", guest, port) }
  record(run, h)

  local info, berr = vm.follow_boot(s.client, id, {
    timeout = tonumber(run.vars.vmm_boot_timeout) or 900,
    on_progress = function(i, elapsed)
      v.status = i.status
      v.boot[#v.boot + 1] = { status = i.status, boot_progress = i.boot_progress, elapsed = elapsed }
      run.console:progress(string.format("%s: VM %s %s, boot progress: %s (%.0f s)", h.name, v.name,
        tostring(i.status), tostring(i.boot_progress), elapsed))
    end,
  })
  if not info then return boot_failed(run, h, berr) end
  v.status = info.status
  record(run, h)
  return true
end

--- After /finish the same forwarded port speaks TLS; the probe decides when.
-- Here only a VM that died is reported, early and with its log.
function T.runtime_ready(run, h)
  local s = run.vmm_session_state and run.vmm_session_state.session
  if not (s and h.vm and h.vm.id) then return true end
  local info = vm.info(s.client, h.vm.id)
  if info == false then return boot_failed(run, h, "the VMM no longer knows the VM") end
  if type(info) == "table" then
    if info.boot_error and info.boot_error ~= "" then return boot_failed(run, h, "boot error: " .. info.boot_error) end
    if info.status == "exited" or info.status == "stopped" then return boot_failed(run, h, "the VM is " .. info.status) end
  end
  return true
end

function T.remove(run, h)
  return remove_vm(run, h)
end

function T.log_tail(run, h, n)
  if not h.vm then return "" end
  h.log_wanted = true
  return tail(fetch_logs(run, h), n)
end

return T
