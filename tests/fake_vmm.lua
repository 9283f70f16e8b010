-- A fake dstack-vmm for tests: speaks the prpc JSON subset the vmm target uses
-- (kms-protocol.md 10: ListImages, CreateVm, Status, GetInfo, StopVm,
-- ShutdownVm, StartVm, RemoveVm, GetComposeHash, GET /logs, Bearer/Basic auth)
-- and "boots" each VM by running `kmsrun serve kms-sim` — kmsrun's KMS
-- emulator, not the real KMS — with the kms.toml found in the VM's compose file.
--
--   kmsrun script tests/fake_vmm.lua [--port 0] [--token T] [--user U --password P]
--       [--image NAME]... [--boot-step SECONDS] [--listen-delay SECONDS] [--fail-boot NAME]
--       [--kms-fault SPEC]...
--
-- Prints "listening on http://127.0.0.1:PORT" when ready; runs until SIGTERM/SIGINT,
-- then kills every emulator it started. What it fakes, and how:
-- - boot: boot_progress goes through the guest's steps to "done" BEFORE the KMS
--   listens (the emulator starts with --fault listen-delay), as on a real CVM;
-- - the port forward tcp:ADDR:HOST_PORT:8000 becomes the emulator listening on
--   127.0.0.1:HOST_PORT (the kms.toml's ports are rewritten), loopback only;
-- - the guest's view of the host, 10.0.2.2, is mapped to loopback (--host-alias);
-- - a compose without the guest-agent socket volume runs the emulator with --no-attestation;
-- - /logs serves the VM's "serial console": boot lines and the emulator's log.
-- Non-standard, for leak checks: GET /fake/processes lists every emulator ever
-- started ({id, name, pid, running}).
local core = require "kmsrun.core"
local server = require "kmsrun.lib.http_server"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local toml = require "kmsrun.lib.toml"
local compose = require "kmsrun.targets.vmm.compose"

local USAGE = "usage: kmsrun script fake_vmm.lua [--port 0] [--token T] [--user U --password P] "
  .. "[--image NAME]... [--boot-step S] [--listen-delay S] [--fail-boot NAME] [--kms-fault SPEC]...\n"
  .. "  --fail-boot NAME   VMs whose name contains NAME fail to boot (boot_error)\n"
  .. "  --kms-fault SPEC   passed to every emulator as --fault SPEC (e.g. slow=Onboard.Onboard:5)\n"

local function parse(args)
  local o = { port = 0, images = {}, kms_faults = {}, boot_step = 0.05, listen_delay = 0.3 }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    local function need() if v == nil then error(a .. " needs a value", 0) end i = i + 1 return v end
    if a == "--port" then o.port = math.tointeger(tonumber(need()))
    elseif a == "--token" then o.token = need()
    elseif a == "--user" then o.user = need()
    elseif a == "--password" then o.password = need()
    elseif a == "--image" then o.images[#o.images + 1] = need()
    elseif a == "--boot-step" then o.boot_step = tonumber(need())
    elseif a == "--listen-delay" then o.listen_delay = tonumber(need())
    elseif a == "--fail-boot" then o.fail_boot = need()
    elseif a == "--kms-fault" then o.kms_faults[#o.kms_faults + 1] = need()
    elseif a == "-h" or a == "--help" then o.help = true
    else error("unknown option " .. a, 0) end
    i = i + 1
  end
  if (o.user == nil) ~= (o.password == nil) then error("--user and --password go together", 0) end
  if #o.images == 0 then o.images = { "dstack-0.5.7" } end
  return o
end

local ok_parse, opts = pcall(parse, { ... })
if not ok_parse then
  io.stderr:write("fake-vmm: ", tostring(opts), "\n", USAGE)
  return 2
end
if opts.help then
  io.stdout:write(USAGE)
  return 0
end

local work = assert(fs.tmpdir("fake-vmm"))
local vms, order = {}, {}   -- id -> vm; creation order of live ids
local processes = {}        -- every emulator ever started

local BOOT_STEPS = { "initializing data disk", "requesting app keys", "data disk ready", "setting up docker",
  "pre-launch", "starting containers", "done" }

-- Helpers ---------------------------------------------------------------------------

local function uuid()
  local h = crypto.hex(crypto.random(16))
  return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20), h:sub(21, 32))
end

local function jsonr(status, value)
  return status, json.encode(value), { ["Content-Type"] = "application/json" }
end

local function rpc_error(msg)
  return jsonr(400, { error = msg })
end

local function console(vm, line)
  fs.append(vm.dir .. "/console.log", string.format("[%8.3f] %s\n", time.now() - vm.started, line))
end

local function event(vm, name, body)
  vm.events[#vm.events + 1] = json.ordered { "event", name, "body", body, "timestamp", math.floor(time.wall() * 1000) }
  while #vm.events > 20 do table.remove(vm.events, 1) end
end

local function set_progress(vm, step)
  vm.boot_progress = step
  event(vm, "boot.progress", step)
  console(vm, "Boot Progress: " .. step)
end

local function authorized(req)
  if not opts.token and not opts.user then return true end
  local h = req.headers["authorization"] or ""
  if opts.token and (h == "Bearer " .. opts.token or req.headers["x-admin-token"] == opts.token) then return true end
  if opts.user then
    local b64 = h:match("^Basic%s+(%S+)$")
    if b64 and crypto.unbase64(b64) == opts.user .. ":" .. opts.password then return true end
  end
  return false
end

-- The VM's processes -------------------------------------------------------------------

local function host_port(vm)
  for _, p in ipairs(vm.config.ports or {}) do
    if p.vm_port == compose.VM_PORT then return math.tointeger(p.host_port) or 0 end
  end
  return 0 -- no forward: the KMS is unreachable, as on a real VMM
end

-- The kms.toml the emulator gets: the compose's, with the forwarded host port on
-- loopback and /kms/... paths inside the VM's directory.
local function emulator_config(vm, toml_text)
  local cfg, err = toml.parse(toml_text)
  if not cfg then return nil, err end
  local root = vm.dir .. "/kms"
  local function path(p)
    if type(p) ~= "string" then return p end
    return (p:gsub("^" .. compose.KMS_DIR:gsub("%p", "%%%0") .. "/", root .. "/"))
  end
  local port = host_port(vm)
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

local function start_emulator(vm)
  local file, err = emulator_config(vm, vm.app.kms_toml)
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
  local p, perr = proc.spawn(argv, { cwd = vm.dir, env = { DSTACK_AGENT_ADDRESS = false },
    stdout = vm.dir .. "/stdout", stderr = vm.dir .. "/console.log" })
  if not p then return nil, perr end
  vm.process = p
  processes[#processes + 1] = { id = vm.id, name = vm.name, process = p }
  return p
end

local function stop_emulator(vm)
  local p = vm.process
  vm.process = nil
  if p and p:running() then p:kill(2) end
end

local function boot(vm)
  local gen = vm.generation
  local function current() return vm.generation == gen and not vm.removed end
  vm.status, vm.boot_error = "running", ""
  set_progress(vm, "booting")
  for _, step in ipairs(BOOT_STEPS) do
    time.sleep(opts.boot_step)
    if not current() then return end
    if step == "starting containers" and opts.fail_boot and vm.name:find(opts.fail_boot, 1, true) then
      vm.boot_error = "failed to start containers"
      console(vm, "Error: failed to start containers (--fail-boot " .. opts.fail_boot .. ")")
      return
    end
    set_progress(vm, step)
    if step == "starting containers" then
      local p, err = start_emulator(vm)
      if not p then
        vm.boot_error = "failed to start containers"
        console(vm, "Error: cannot start the KMS container: " .. tostring(err))
        return
      end
    end
  end
  -- The "container" has no restart policy here: a dead emulator is an exited VM.
  -- Polled rather than waited on, so StopVm/RemoveVm own the only wait (p:kill).
  local p = vm.process
  while current() and vm.process == p and p:running() do time.sleep(0.05) end
  if current() and vm.process == p then
    console(vm, "the KMS container exited with status " .. tostring((p:wait())))
    vm.status, vm.exited_at = "exited", os.date("!%Y-%m-%dT%H:%M:%SZ")
    vm.process = nil
  end
end

local function start_boot(vm)
  vm.generation = (vm.generation or 0) + 1
  vm.started = time.now()
  task.spawn(boot, vm)
end

-- VmInfo (10.3) ---------------------------------------------------------------------------

local function info(vm, brief)
  return {
    id = vm.id, name = vm.name, status = vm.status,
    uptime = vm.status == "running" and string.format("%ds", math.floor(time.now() - vm.started)) or "",
    app_url = json.null, app_id = vm.app_id, instance_id = vm.instance_id,
    configuration = brief and json.null or vm.config,
    exited_at = vm.exited_at or "never", boot_progress = vm.boot_progress, boot_error = vm.boot_error,
    shutdown_progress = "", image_version = vm.image_version, events = json.array(vm.events),
    interfaces = json.array(),
  }
end

-- Methods ------------------------------------------------------------------------------------

local M = {}

function M.ListImages()
  local list = json.array()
  for _, name in ipairs(opts.images) do
    list[#list + 1] = { name = name, description = "{}", version = name:match("(%d+%.%d+%.%d+)") or "0.0.0", is_dev = false }
  end
  return jsonr(200, { images = list })
end

-- Validates a VmConfiguration; returns the app compose table or nil, error text.
local function check_compose(cfg)
  if type(cfg.compose_file) ~= "string" then return nil, "invalid app compose JSON: compose_file is missing" end
  local app, err = json.decode(cfg.compose_file)
  if type(app) ~= "table" then return nil, "invalid app compose JSON: " .. tostring(err or "not an object") end
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

function M.CreateVm(cfg)
  if type(cfg.name) ~= "string" or not cfg.name:match("^[%w%-_%. @~!%$%^%(%)]+$") then
    return rpc_error("Invalid name: " .. tostring(cfg.name))
  end
  if not image_known(cfg.image) then return rpc_error("Failed to find image: " .. tostring(cfg.image)) end
  local app, err = check_compose(cfg)
  if not app then return rpc_error(err) end
  local dc, derr = compose.read_docker_compose(app.docker_compose_file)
  if not dc then return rpc_error("fake-vmm: cannot run this compose: " .. tostring(derr)) end
  local seen = {}
  for _, p in ipairs(cfg.ports or {}) do
    local key = string.format("%s %s:%s", tostring(p.protocol), tostring(p.host_address), tostring(p.host_port))
    if seen[p.host_port] then return rpc_error("duplicate host port mapping: " .. key) end
    seen[p.host_port] = true
    if p.vm_port ~= compose.VM_PORT then
      return rpc_error("fake-vmm: only vm_port " .. compose.VM_PORT .. " is served (the KMS's port)")
    end
    for _, id in ipairs(order) do
      for _, q in ipairs(vms[id].config.ports or {}) do
        if q.host_port == p.host_port then
          return rpc_error(string.format("host port mapping conflicts with VM %s: %s", id, key))
        end
      end
    end
  end
  local id = uuid()
  local vm = {
    id = id, name = cfg.name, config = cfg, app = dc, events = {},
    app_id = (cfg.app_id and cfg.app_id ~= "" and cfg.app_id:gsub("^0x", "")) or crypto.hex(crypto.sha256(cfg.compose_file)):sub(1, 40),
    instance_id = crypto.hex(crypto.random(20)), image_version = cfg.image:match("(%d+%.%d+%.%d+)") or "",
    dir = work .. "/" .. id, boot_progress = "", boot_error = "",
  }
  fs.mkdir(vm.dir)
  vms[id] = vm
  order[#order + 1] = id
  if cfg.stopped then
    vm.status, vm.started = "stopped", time.now()
  else
    start_boot(vm)
  end
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
  return jsonr(200, { vms = list, port_mapping_enabled = true, total = #list })
end

function M.GetInfo(req)
  local vm = vms[req.id or ""]
  if not vm then return jsonr(200, json.ordered { "found", false, "info", json.null }) end
  return jsonr(200, { found = true, info = info(vm, false) })
end

local function with_vm(req, verb, fn)
  local vm = vms[req.id or ""]
  if not vm then return rpc_error("Failed to " .. verb .. " VM: VM not found") end
  fn(vm)
  return 200, "null", { ["Content-Type"] = "application/json" }
end

function M.StopVm(req)
  return with_vm(req, "stop", function(vm)
    vm.generation = (vm.generation or 0) + 1
    stop_emulator(vm)
    vm.status, vm.exited_at = "stopped", os.date("!%Y-%m-%dT%H:%M:%SZ")
  end)
end
M.ShutdownVm = M.StopVm

function M.StartVm(req)
  return with_vm(req, "start", function(vm)
    if vm.status ~= "running" then start_boot(vm) end
  end)
end

function M.RemoveVm(req)
  return with_vm(req, "remove", function(vm)
    vm.removed = true
    vm.status = "removing"
    stop_emulator(vm)
    vms[vm.id] = nil
    for i, id in ipairs(order) do if id == vm.id then table.remove(order, i) break end end
    fs.remove(vm.dir)
  end)
end

-- HTTP -----------------------------------------------------------------------------------------

local function query_params(q)
  local t = {}
  for k, v in (q or ""):gmatch("([^&=]+)=?([^&]*)") do t[k] = v end
  return t
end

local function logs(req)
  local q = query_params(req.query)
  local vm = vms[q.id or ""]
  if not vm then return 404, "VM not found", { ["Content-Type"] = "text/plain" } end
  local ch = q.ch or "serial"
  local file = ({ serial = "console.log", stdout = "stdout", stderr = "stderr" })[ch]
  if not file then return 400, "Unknown channel " .. ch, { ["Content-Type"] = "text/plain" } end
  local text = fs.read(vm.dir .. "/" .. file) or ""
  local n = tonumber(q.lines) or 10000
  local lines = {}
  for line in text:gmatch("[^\n]*\n?") do if line ~= "" then lines[#lines + 1] = line end end
  return 200, table.concat(lines, "", math.max(1, #lines - n + 1)), { ["Content-Type"] = "text/plain" }
end

local function fake_processes()
  local list = json.array()
  for _, e in ipairs(processes) do
    list[#list + 1] = { id = e.id, name = e.name, pid = e.process.pid, running = e.process:running() }
  end
  return jsonr(200, { processes = list })
end

local function handle(req)
  if not authorized(req) then
    return 401, "", { ["WWW-Authenticate"] = 'Basic realm="dstack-vmm"' }
  end
  local method = req.path:match("^/prpc/([%w_.]+)$")
  if method then
    method = method:gsub("^Vmm%.", "")
    local fn = M[method]
    if not fn then return rpc_error("No such method: " .. method) end
    local body = {}
    if req.body ~= "" then
      local decoded = json.decode(req.body)
      if type(decoded) ~= "table" then return rpc_error("failed to decode the request: not a JSON object") end
      body = decoded
    end
    return fn(body)
  end
  if req.path == "/logs" and req.method == "GET" then return logs(req) end
  if req.path == "/fake/processes" then return fake_processes() end
  return 404, "not found", { ["Content-Type"] = "text/plain" }
end

local srv, err = server.listen(handle, { host = "127.0.0.1", port = opts.port })
if not srv then
  io.stderr:write("fake-vmm: cannot listen on 127.0.0.1:", tostring(opts.port), ": ", tostring(err), "\n")
  fs.remove(work)
  return 3
end
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()

local stop = require("kmsrun.lib.task").wait_for_signal("fake-vmm: until SIGTERM or SIGINT")
srv:close()
for _, id in ipairs(order) do stop_emulator(vms[id]) end
fs.remove(work)
io.stderr:write("fake-vmm: ", stop, ": stopped every VM\n")
return 0
