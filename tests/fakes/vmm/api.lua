-- The prpc methods of the fake dstack-vmm (tests/fake_vmm.lua), with the real
-- VMM's rules where kmsrun or upstream's vmm-cli.py meet them (paths on main
-- unless a tag is named):
-- - port forwards: refused when [cvm.port_mapping] is disabled ("Port mapping
--   is disabled") or the host port is outside its range ("Port mapping is not
--   allowed for tcp:N"); clashes as in dstack/vmm/src/main_service.rs:163-222, 450-480;
-- - app_id: null or absent means the compose's (main_service.rs:224-227);
-- - RemoveVm: --old-remove refuses a running VM ("VM is running, stop it first",
--   vmm/src/app.rs:282 at v0.5.6); otherwise it stops the VM itself and the VM is
--   listed as "removing" for --removing-delay seconds (app.rs:645-670, app/vm_info.rs:236);
-- - ListImages: is_dev for dev images; ListGpus answers an empty list;
--   ResizeVm refuses a running VM; UpgradeApp takes a new compose.
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local compose = require "kmsrun.targets.vmm.compose"

return function(S, G)
  local M = {}
  local opts, vms, order = S.opts, S.vms, S.order

  local function jsonr(status, value)
    return status, json.encode(value), { ["Content-Type"] = "application/json" }
  end
  local function rpc_error(msg) return jsonr(400, { error = msg }) end
  local function null() return 200, "null", { ["Content-Type"] = "application/json" } end

  local function uuid()
    local h = crypto.hex(crypto.random(16))
    return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20), h:sub(21, 32))
  end

  local function image_version(name) return name:match("(%d+%.%d+%.%d+)") or "0.0.0" end
  local function is_dev(name) return name:find("%-dev%-") ~= nil end

  local function info(vm, brief)
    return {
      id = vm.id, name = vm.name, status = vm.removing and "removing" or vm.status,
      uptime = vm.status == "running" and string.format("%ds", math.floor(time.now() - vm.started)) or "",
      app_url = json.null, app_id = vm.app_id, instance_id = vm.instance_id,
      configuration = brief and json.null or vm.config,
      exited_at = vm.exited_at or "never", boot_progress = vm.boot_progress, boot_error = vm.boot_error,
      shutdown_progress = "", image_version = image_version(vm.config.image), events = json.array(vm.events),
      interfaces = json.array(),
    }
  end

  function M.ListImages()
    local list = json.array()
    for _, name in ipairs(opts.images) do
      list[#list + 1] = { name = name, description = "{}", version = image_version(name), is_dev = is_dev(name) }
    end
    return jsonr(200, { images = list })
  end

  function M.Version()
    return jsonr(200, { version = opts.version, rev = "fake" })
  end

  -- GetMeta exists on main only; --version 0.5.x (x <= 11) answers "No such method" like a release.
  function M.GetMeta()
    if opts.version ~= "main" then return rpc_error("No such method: GetMeta") end
    return jsonr(200, { networking = { supported_modes = json.array { "user", "bridge" },
      default_mode = opts.networking, default_bridge = "" } })
  end

  function M.ListGpus()
    return jsonr(200, { gpus = json.array(), allow_attach_all = false })
  end

  local function check_compose(cfg)
    if type(cfg.compose_file) ~= "string" then return nil, "Invalid compose file: compose_file is missing" end
    local app, err = json.decode(cfg.compose_file)
    if type(app) ~= "table" then return nil, "Invalid compose file: " .. tostring(err or "not an object") end
    return app
  end

  function M.GetComposeHash(cfg)
    local _, err = check_compose(cfg)
    if err then return rpc_error(err) end
    return jsonr(200, { hash = crypto.hex(crypto.sha256(cfg.compose_file)) })
  end

  local function image_known(name)
    for _, n in ipairs(opts.images) do if n == name then return true end end
    return false
  end

  local function in_range(port)
    for _, r in ipairs(opts.port_range) do if port >= r.from and port <= r.to then return true end end
    return false
  end

  local function conflict(a, b)
    return a.protocol == b.protocol and a.host_port == b.host_port
      and (a.host_address == b.host_address or a.host_address == "0.0.0.0" or b.host_address == "0.0.0.0")
  end

  -- Port forwards, as create_manifest_from_vm_config and validate_port_mapping_conflicts check them.
  local function check_ports(cfg)
    local list = cfg.ports or {}
    if #list > 0 and not opts.port_mapping then return "Port mapping is disabled" end
    for i, p in ipairs(list) do
      p.host_address = (p.host_address == nil or p.host_address == "") and "127.0.0.1" or p.host_address
      local hp = math.tointeger(p.host_port)
      if not hp or hp < 1 or hp > 65535 then return "Invalid host port" end
      if p.protocol ~= "tcp" or not in_range(hp) then
        return string.format("Port mapping is not allowed for %s:%d", tostring(p.protocol), hp)
      end
      for j = 1, i - 1 do
        if conflict(p, list[j]) then
          return string.format("duplicate host port mapping: %s %s:%d", p.protocol, p.host_address, hp)
        end
      end
      for _, id in ipairs(order) do
        for _, q in ipairs(vms[id].config.ports or {}) do
          if conflict(p, q) then
            return string.format("host port mapping conflicts with VM %s: %s %s:%d", id, p.protocol, p.host_address, hp)
          end
        end
      end
    end
    return nil
  end

  function M.CreateVm(cfg)
    if type(cfg.name) ~= "string" or not cfg.name:match("^[%w%-_%. @~!%$%^%(%)]+$") then
      return rpc_error("Invalid name: " .. tostring(cfg.name))
    end
    local perr = check_ports(cfg)
    if perr then return rpc_error(perr) end
    if not image_known(cfg.image) then return rpc_error("Failed to find image: " .. tostring(cfg.image)) end
    local app, err = check_compose(cfg)
    if not app then return rpc_error(err) end
    local dc, derr = compose.read_docker_compose(app.docker_compose_file)
    if not dc then return rpc_error("fake-vmm: cannot run this compose: " .. tostring(derr)) end
    local app_id = cfg.app_id
    if type(app_id) ~= "string" or app_id == "" then app_id = crypto.hex(crypto.sha256(cfg.compose_file)):sub(1, 40) end
    local id = uuid()
    local vm = {
      id = id, name = cfg.name, config = cfg, app = dc, app_compose = app, events = {},
      app_id = app_id:gsub("^0x", ""):lower(), instance_id = crypto.hex(crypto.random(20)),
      dir = S.work .. "/" .. id, boot_progress = "", boot_error = "", started = time.now(),
    }
    fs.mkdir(vm.dir)
    vms[id] = vm
    order[#order + 1] = id
    if cfg.stopped then vm.status = "stopped" else G.start_boot(vm) end
    return jsonr(200, { id = id })
  end

  function M.Status(req)
    local want, list = nil, json.array()
    if type(req.ids) == "table" and #req.ids > 0 then
      want = {}
      for _, id in ipairs(req.ids) do want[id] = true end
    end
    local keyword = type(req.keyword) == "string" and req.keyword or ""
    for _, id in ipairs(order) do
      local vm = vms[id]
      if (not want or want[id]) and (keyword == "" or vm.name:find(keyword, 1, true)) then
        list[#list + 1] = info(vm, req.brief)
      end
    end
    return jsonr(200, { vms = list, port_mapping_enabled = opts.port_mapping, total = #list })
  end

  function M.GetInfo(req)
    local vm = vms[req.id or ""]
    if not vm then return jsonr(200, json.ordered { "found", false, "info", json.null }) end
    return jsonr(200, { found = true, info = info(vm, false) })
  end

  local function with_vm(req, verb, fn)
    local vm = vms[req.id or ""]
    if not vm then return rpc_error("Failed to " .. verb .. " VM: VM not found") end
    local err = fn(vm)
    if err then return rpc_error("Failed to " .. verb .. " VM: " .. err) end
    return null()
  end

  local function stop(vm)
    vm.generation = (vm.generation or 0) + 1
    G.stop(vm)
    if vm.status ~= "stopped" then vm.status, vm.exited_at = "stopped", os.date("!%Y-%m-%dT%H:%M:%SZ") end
  end

  function M.StopVm(req)
    return with_vm(req, "stop", function(vm) if vm.removing then return "VM is being removed" end stop(vm) end)
  end
  M.ShutdownVm = M.StopVm

  function M.StartVm(req)
    return with_vm(req, "start", function(vm)
      if vm.removing then return "VM is being removed" end
      if vm.status ~= "running" then G.start_boot(vm) end
    end)
  end

  local function forget(vm)
    vm.removed = true
    vms[vm.id] = nil
    for i, id in ipairs(order) do if id == vm.id then table.remove(order, i) break end end
    fs.remove(vm.dir)
  end

  function M.RemoveVm(req)
    return with_vm(req, "remove", function(vm)
      if vm.removing then return nil end -- already being removed: a no-op
      if opts.old_remove and vm.status == "running" then return "VM is running, stop it first" end
      vm.removing = true
      stop(vm)
      task.spawn(function()
        time.sleep(opts.removing_delay)
        forget(vm)
      end)
    end)
  end

  -- ResizeVm needs a stopped VM (apply_resource_updates, main_service.rs:505).
  function M.ResizeVm(req)
    local vm = vms[req.id or ""]
    if not vm then return rpc_error("VM not found") end
    if vm.status == "running" then return rpc_error("vm should be stopped before resize: " .. vm.id) end
    for _, k in ipairs({ "vcpu", "memory", "disk_size" }) do if req[k] then vm.config[k] = req[k] end end
    return null()
  end

  -- UpgradeApp (= UpdateVm, main_service.rs:633-700): a new compose for an
  -- existing VM, taken at its next start; answers the id.
  function M.UpgradeApp(req)
    local vm = vms[req.id or ""]
    if not vm then return rpc_error("The instance " .. tostring(req.id) .. " not found") end
    if type(req.compose_file) == "string" and req.compose_file ~= "" then
      local app, err = check_compose(req)
      if not app then return rpc_error(err) end
      vm.config.compose_file = req.compose_file
    end
    return jsonr(200, { id = vm.id })
  end

  M.info = info
  return M
end
