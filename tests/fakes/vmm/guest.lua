-- The inside of a fake VMM's "CVM" (tests/fake_vmm.lua): the boot steps the
-- guest reports, the KMS "container" (kmsrun's KMS emulator, or a process that
-- fails at once for --crash-loop, restarted as docker's `restart: unless-stopped`
-- does), and the guest agent's external HTTP port (8090 in the CVM) with its
-- GET /logs/<container> (public_logs only), as dstack/guest-agent/src/http_routes.rs.
-- A real guest does not copy container output to the serial console: here
-- neither; the serial log holds only what the guest's boot prints.
local server = require "kmsrun.lib.http_server"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local json = require "kmsrun.lib.json"
local toml = require "kmsrun.lib.toml"
local compose = require "kmsrun.targets.vmm.compose"

return function(S)
  local G = {}
  local opts = S.opts

  local BOOT_STEPS = { "initializing data disk", "requesting app keys", "data disk ready", "setting up docker",
    "pre-launch", "starting containers", "done" }
  G.AGENT_PORT = 8090

  function G.console(vm, line)
    fs.append(vm.dir .. "/console.log", string.format("[%8.3f] %s\n", time.now() - vm.started, line))
  end

  local function event(vm, name, body)
    vm.events[#vm.events + 1] = json.ordered { "event", name, "body", body, "timestamp", math.floor(time.wall() * 1000) }
    while #vm.events > 20 do table.remove(vm.events, 1) end
  end

  local function set_progress(vm, step)
    -- An image without progress reporting stays at "N/A" (dstack/vmm/src/app.rs:424 on main).
    if not opts.no_boot_progress then vm.boot_progress = step end
    event(vm, "boot.progress", step)
    G.console(vm, "Boot Progress: " .. step)
  end

  local function forwarded(vm, vm_port)
    for _, p in ipairs(vm.config.ports or {}) do
      if p.vm_port == vm_port then return math.tointeger(p.host_port) end
    end
    return nil
  end

  -- The kms.toml the emulator gets: the compose's, with the forwarded host port on
  -- loopback and /kms/... paths inside the VM's directory.
  local function emulator_config(vm)
    local cfg, err = toml.parse(vm.app.kms_toml)
    if not cfg then return nil, err end
    local root = vm.dir .. "/kms"
    local function path(p)
      if type(p) ~= "string" then return p end
      return (p:gsub("^" .. compose.KMS_DIR:gsub("%p", "%%%0") .. "/", root .. "/"))
    end
    local port = forwarded(vm, compose.VM_PORT) or 0 -- no forward: unreachable, as on a real VMM
    cfg.rpc = cfg.rpc or {}
    cfg.rpc.address, cfg.rpc.port = "127.0.0.1", port
    cfg.rpc.tls = cfg.rpc.tls or {}
    cfg.rpc.tls.key, cfg.rpc.tls.certs = path(cfg.rpc.tls.key), path(cfg.rpc.tls.certs)
    if cfg.rpc.tls.mutual then cfg.rpc.tls.mutual.ca_certs = path(cfg.rpc.tls.mutual.ca_certs) end
    cfg.core = cfg.core or {}
    cfg.core.cert_dir = path(cfg.core.cert_dir)
    cfg.core.onboard = cfg.core.onboard or {}
    cfg.core.onboard.address, cfg.core.onboard.port = "127.0.0.1", port
    fs.mkdir(root .. "/certs")
    fs.mkdir(root .. "/images")
    local file = root .. "/kms.toml"
    local ok, werr = fs.write(file, toml.encode(cfg))
    if not ok then return nil, werr end
    return file
  end

  local function container_argv(vm)
    if opts.crash_loop and vm.name:find(opts.crash_loop, 1, true) then
      -- What a dstack-kms whose main returns an error prints before exiting.
      return { "/bin/sh", "-c", "echo 'Loading config from /kms/kms.toml'; "
        .. "echo 'Error: failed to bind 0.0.0.0:8000 (--crash-loop)' >&2; exit 1" }
    end
    local file, err = emulator_config(vm)
    if not file then return nil, err end
    local compose_path = vm.dir .. "/app-compose.json"
    fs.write(compose_path, vm.config.compose_file)
    local argv = { proc.exe(), "serve", "kms-sim", "-c", file, "--name", vm.name, "--image", vm.config.image,
      "--compose-file", compose_path, "--host-alias", "10.0.2.2=127.0.0.1",
      "--fault", string.format("listen-delay=%g", opts.listen_delay) }
    if not vm.app.guest_agent then argv[#argv + 1] = "--no-attestation" end
    for _, f in ipairs(opts.kms_faults) do
      argv[#argv + 1] = "--fault"
      argv[#argv + 1] = f
    end
    return argv
  end

  local function start_container(vm)
    local argv, err = container_argv(vm)
    if not argv then return nil, err end
    local log = vm.dir .. "/container.log"
    local p, perr = proc.spawn(argv, { cwd = vm.dir, env = { DSTACK_AGENT_ADDRESS = false }, stdout = log, stderr = log })
    if not p then return nil, perr end
    vm.process = p
    S.processes[#S.processes + 1] = { id = vm.id, name = vm.name, process = p }
    return p
  end

  function G.stop(vm)
    local p = vm.process
    vm.process = nil
    if p and p:running() then p:kill(2) end
    if vm.agent then vm.agent:close() vm.agent = nil end
  end

  -- The guest agent's external port: GET / and, with public_logs, GET /logs/<container>.
  local function agent_handler(vm)
    return function(req)
      if req.path == "/" then return 200, "<html><body>dstack guest agent (fake) " .. vm.id .. "</body></html>" end
      local name = req.path:match("^/logs/([^/]+)$")
      if not name or not vm.app_compose.public_logs then return 404, "not found" end
      if name ~= (vm.app.container_name or "") then
        return 200, json.encode({ error = "Docker responded with status code 404: No such container: " .. name })
      end
      local q = {}
      for k, v in (req.query or ""):gmatch("([^&=]+)=?([^&]*)") do q[k] = v end
      local lines = {}
      for line in (fs.read(vm.dir .. "/container.log") or ""):gmatch("[^\n]*\n?") do
        if line ~= "" then lines[#lines + 1] = line end
      end
      local n = tonumber(q.tail) or 1000
      return 200, table.concat(lines, "", math.max(1, #lines - n + 1)), { ["Content-Type"] = "text/plain" }
    end
  end

  local function start_agent(vm)
    local port = forwarded(vm, G.AGENT_PORT)
    if not port then return true end
    local srv, err = server.listen(agent_handler(vm), { host = "127.0.0.1", port = port })
    if not srv then return nil, err end
    vm.agent = srv
    return true
  end

  local function boot(vm)
    local gen = vm.generation
    local function current() return vm.generation == gen and not vm.removed end
    vm.status, vm.boot_error = "running", ""
    vm.boot_progress = opts.no_boot_progress and "N/A" or "booting"
    G.console(vm, "Boot Progress: booting")
    local ok, err = start_agent(vm)
    if not ok then
      -- QEMU cannot set up the forward: it exits at once.
      G.console(vm, "qemu: Could not set up host forwarding rule: " .. tostring(err))
      vm.status, vm.exited_at = "exited", os.date("!%Y-%m-%dT%H:%M:%SZ")
      return
    end
    for _, step in ipairs(BOOT_STEPS) do
      time.sleep(opts.boot_step)
      if not current() then return end
      if step == "requesting app keys" and opts.no_key_provider and vm.app_compose.key_provider == "local" then
        set_progress(vm, step)
        vm.boot_error = "Failed to get sealing key: the VMM's key provider is not enabled"
        G.console(vm, "Error: Failed to request app keys: Failed to get sealing key (--no-key-provider)")
        return
      end
      if step == "starting containers" and opts.fail_boot and vm.name:find(opts.fail_boot, 1, true) then
        vm.boot_error = "failed to start containers"
        G.console(vm, "Error: failed to start containers (--fail-boot " .. opts.fail_boot .. ")")
        return
      end
      set_progress(vm, step)
      if step == "starting containers" then
        local p, serr = start_container(vm)
        if not p then
          vm.boot_error = "failed to start containers"
          G.console(vm, "Error: cannot start the KMS container: " .. tostring(serr))
          return
        end
      end
    end
    -- restart: unless-stopped: a container that exits is started again, with
    -- docker's doubling delay. Polled, so StopVm/RemoveVm own the only wait (p:kill).
    local delay = 0.1
    while current() do
      local p = vm.process
      while current() and vm.process == p and p and p:running() do time.sleep(0.05) end
      if not current() or vm.process ~= p then return end
      time.sleep(delay)
      delay = math.min(delay * 2, 2)
      if not current() then return end
      start_container(vm)
    end
  end

  function G.start_boot(vm)
    vm.generation = (vm.generation or 0) + 1
    vm.started = time.now()
    task.spawn(boot, vm)
  end

  return G
end
