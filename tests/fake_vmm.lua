-- A fake dstack-vmm for tests: speaks the prpc JSON subset the vmm target and
-- upstream's vmm-cli.py use (kms-protocol.md 10: ListImages, ListGpus, CreateVm,
-- Status, GetInfo, StopVm, ShutdownVm, StartVm, RemoveVm, ResizeVm, UpgradeApp,
-- GetComposeHash, GET /logs) and "boots" each VM by running `kmsrun serve kms-sim`
-- — kmsrun's KMS emulator, not the real KMS — with the kms.toml of its compose.
-- By default it holds its clients to the real VMM's rules (tests/fakes/vmm/api.lua
-- lists them with their upstream source); switches emulate older or other setups.
--
--   kmsrun script tests/fake_vmm.lua [--port 0] [options]
--
-- Prints "listening on http://127.0.0.1:PORT" when ready; runs until SIGTERM/SIGINT,
-- then kills every emulator it started. How it fakes a CVM (tests/fakes/vmm/guest.lua):
-- - boot: boot_progress goes through the guest's steps to "done" BEFORE the KMS
--   listens (the emulator starts with --fault listen-delay), as on a real CVM;
-- - the forward tcp:ADDR:P:8000 becomes the emulator listening on 127.0.0.1:P,
--   tcp:ADDR:Q:8090 the guest agent's HTTP port on 127.0.0.1:Q (loopback only);
-- - the guest's view of the host, 10.0.2.2, is mapped to loopback (--host-alias);
-- - /logs serves the serial console (boot lines only); the KMS container's own
--   output is served by the guest agent's /logs/<container> (public_logs).
-- Non-standard, for tests: GET /fake/processes lists every emulator ever started
-- ({id, name, pid, running}); --record FILE appends one JSON line per prpc request.
local server = require "kmsrun.lib.http_server"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"

local HERE = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")

local USAGE = [[usage: kmsrun script fake_vmm.lua [--port 0] [options]
  --token T            accept this API token: Bearer T, X-Admin-Token T, or Basic with T as password
  --user U --password P  accept Basic U:P (a VMM with an htpasswd_file, after v0.5.11)
  --bearer-only        accept the token only as Bearer (released VMMs, up to v0.5.11)
  --image NAME         an OS image to offer (repeatable; default dstack-0.5.7); "-dev-" in it: is_dev
  --port-range A-B     [cvm.port_mapping] range (repeatable; default 1-20000)
  --port-mapping-disabled   [cvm.port_mapping] enabled = false
  --old-remove         RemoveVm refuses a running VM (VMM <= v0.5.6)
  --removing-delay S   seconds a removed VM stays listed as "removing" (default 0.3)
  --no-key-provider    the VMM's [key_provider] is off: a local-key-provider boot fails at "requesting app keys"
  --no-boot-progress   the image reports no boot progress (boot_progress "N/A")
  --crash-loop NAME    the KMS container of VMs whose name contains NAME exits at once, again and again
  --fail-boot NAME     VMs whose name contains NAME fail to boot (boot_error)
  --kms-fault SPEC     passed to every emulator as --fault SPEC (e.g. slow=Onboard.Onboard:5)
  --boot-step S, --listen-delay S   timing of the fake boot
  --version V          what Version answers (default main; a release version also drops GetMeta)
  --networking MODE    GetMeta's default networking mode (default user; bridge)
  --record FILE        append every prpc request ({method, body}) to FILE as JSON lines
]]

local function parse(args)
  local o = { port = 0, images = {}, kms_faults = {}, boot_step = 0.05, listen_delay = 0.3, port_range = {},
    port_mapping = true, removing_delay = 0.3, version = "main", networking = "user" }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    local function need() if v == nil then error(a .. " needs a value", 0) end i = i + 1 return v end
    if a == "--port" then o.port = math.tointeger(tonumber(need()))
    elseif a == "--token" then o.token = need()
    elseif a == "--user" then o.user = need()
    elseif a == "--password" then o.password = need()
    elseif a == "--bearer-only" then o.bearer_only = true
    elseif a == "--image" then o.images[#o.images + 1] = need()
    elseif a == "--port-range" then
      local from, to = need():match("^(%d+)%-(%d+)$")
      if not from then error("--port-range wants FROM-TO", 0) end
      o.port_range[#o.port_range + 1] = { from = tonumber(from), to = tonumber(to) }
    elseif a == "--port-mapping-disabled" then o.port_mapping = false
    elseif a == "--old-remove" then o.old_remove = true
    elseif a == "--removing-delay" then o.removing_delay = tonumber(need())
    elseif a == "--no-key-provider" then o.no_key_provider = true
    elseif a == "--no-boot-progress" then o.no_boot_progress = true
    elseif a == "--crash-loop" then o.crash_loop = need()
    elseif a == "--boot-step" then o.boot_step = tonumber(need())
    elseif a == "--listen-delay" then o.listen_delay = tonumber(need())
    elseif a == "--fail-boot" then o.fail_boot = need()
    elseif a == "--kms-fault" then o.kms_faults[#o.kms_faults + 1] = need()
    elseif a == "--record" then o.record = need()
    elseif a == "--version" then o.version = need()
    elseif a == "--networking" then o.networking = need()
    elseif a == "-h" or a == "--help" then o.help = true
    else error("unknown option " .. a, 0) end
    i = i + 1
  end
  if (o.user == nil) ~= (o.password == nil) then error("--user and --password go together", 0) end
  if #o.images == 0 then o.images = { "dstack-0.5.7" } end
  if #o.port_range == 0 then o.port_range = { { from = 1, to = 20000 } } end
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

local S = { opts = opts, vms = {}, order = {}, processes = {}, work = assert(fs.tmpdir("fake-vmm")) }
local G = dofile(HERE .. "fakes/vmm/guest.lua")(S)
local M = dofile(HERE .. "fakes/vmm/api.lua")(S, G)

-- The api-auth rules (dstack/crates/api-auth/src/lib.rs:130-137, 190-205 on main):
-- Bearer token, X-Admin-Token, Basic user:password from htpasswd, Basic with the
-- token as password (or as user with an empty password). Released VMMs: Bearer only.
local function authorized(req)
  if not opts.token and not opts.user then return true end
  local h = req.headers["authorization"] or ""
  if opts.token and h == "Bearer " .. opts.token then return true end
  if opts.bearer_only then return false end
  if opts.token and req.headers["x-admin-token"] == opts.token then return true end
  local b64 = h:match("^Basic%s+(%S+)$")
  if b64 then
    local pair = crypto.unbase64(b64) or ""
    local user, password = pair:match("^([^:]*):(.*)$")
    if not user then user, password = pair, "" end
    if opts.user and user == opts.user and password == opts.password then return true end
    if opts.token and (password == opts.token or (password == "" and user == opts.token)) then return true end
  end
  return false
end

local function query_params(q)
  local t = {}
  for k, v in (q or ""):gmatch("([^&=]+)=?([^&]*)") do t[k] = v end
  return t
end

local function logs(req)
  local q = query_params(req.query)
  local vm = S.vms[q.id or ""]
  if not vm then return 404, "VM not found", { ["Content-Type"] = "text/plain" } end
  local ch = q.ch or "serial"
  -- The fake's QEMU prints nothing on its stdout/stderr.
  local file = ({ serial = "console.log", stdout = "qemu.stdout", stderr = "qemu.stderr" })[ch]
  if not file then return 400, "Unknown channel " .. ch, { ["Content-Type"] = "text/plain" } end
  local text = fs.read(vm.dir .. "/" .. file) or ""
  local n = tonumber(q.lines) or 10000
  local lines = {}
  for line in text:gmatch("[^\n]*\n?") do if line ~= "" then lines[#lines + 1] = line end end
  return 200, table.concat(lines, "", math.max(1, #lines - n + 1)), { ["Content-Type"] = "text/plain" }
end

local function fake_processes()
  local list = json.array()
  for _, e in ipairs(S.processes) do
    list[#list + 1] = { id = e.id, name = e.name, pid = e.process.pid, running = e.process:running() }
  end
  return 200, json.encode({ processes = list }), { ["Content-Type"] = "application/json" }
end

local seq = 0
local function record(method, body)
  if not opts.record then return end
  seq = seq + 1
  fs.append(opts.record, json.encode({ seq = seq, method = method, body = body }) .. "\n")
end

local function handle(req)
  if not authorized(req) then
    return 401, "", { ["WWW-Authenticate"] = 'Basic realm="dstack-vmm"' }
  end
  local method = req.path:match("^/prpc/([%w_.]+)$")
  if method then
    method = method:gsub("^Vmm%.", "")
    local body = {}
    if req.body ~= "" then
      local decoded = json.decode(req.body)
      if type(decoded) ~= "table" then return 400, json.encode({ error = "failed to decode the request: not a JSON object" }) end
      body = decoded
    end
    -- json.null (app_id: null) means absent, as serde's Option does.
    for k, v in pairs(body) do if v == json.null then body[k] = nil end end
    record(method, body)
    local fn = M[method] ~= M.info and M[method] or nil
    if not fn then return 400, json.encode({ error = "No such method: " .. method }) end
    return fn(body)
  end
  if req.path == "/logs" and req.method == "GET" then return logs(req) end
  if req.path == "/fake/processes" then return fake_processes() end
  return 404, "not found", { ["Content-Type"] = "text/plain" }
end

local srv, err = server.listen(handle, { host = "127.0.0.1", port = opts.port })
if not srv then
  io.stderr:write("fake-vmm: cannot listen on 127.0.0.1:", tostring(opts.port), ": ", tostring(err), "\n")
  fs.remove(S.work)
  return 3
end
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()

local stop = require("kmsrun.lib.task").wait_for_signal("fake-vmm: until SIGTERM or SIGINT")
srv:close()
for _, id in ipairs(S.order) do G.stop(S.vms[id]) end
fs.remove(S.work)
io.stderr:write("fake-vmm: ", stop, ": stopped every VM\n")
return 0
