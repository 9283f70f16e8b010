-- The `local` target: each KMS is a user-provided `dstack-kms` process on
-- loopback, configured by the same kms.toml generator as the other targets,
-- attested through a user-provided dstack simulator (sdk/simulator), as the
-- guide prescribes for development without TDX hardware (kms-protocol.md 11).
-- One simulator serves the whole run; it listens on ./dstack.sock in its
-- working directory and the KMS finds it through DSTACK_AGENT_ADDRESS. An
-- instance declared with attestation=false is pointed at a socket that does
-- not exist: a KMS with no guest agent at all.
local fs = require "kmsrun.fs"
local tail = require("kmsrun.targets.registry").tail_file
local http = require "kmsrun.http"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local kms_config = require "kmsrun.kms.config"
local hostport = require "kmsrun.targets.hostport"
local local_attested = require "kmsrun.targets.local_attested"

local T = {
  name = "local",
  summary = "dstack-kms processes on loopback, attested by the dstack simulator",
  vars = {
    kms_binary = { default = "dstack-kms", help = "the dstack-kms binary to run (searched in PATH) (local target)" },
    simulator_binary = { default = "dstack-simulator", help = "the dstack-simulator binary (searched in PATH) (local target)" },
    simulator_dir = { default = "", help = "directory with the simulator's files (dstack.toml, *.json, attestation.bin), copied into a private work dir (default: the binary's directory) (local target)" },
    simulator_timeout = { default = "15", help = "seconds for the simulator to create dstack.sock (local target)" },
    local_ports = { default = "", help = "ports for the KMS instances in declaration order, comma separated (default: free ports) (local target)" },
    local_start_timeout = { default = "20", help = "seconds for a dstack-kms to accept connections on its port (local target)" },
  },
  wait_defaults = { timeout = 60 },
}

local PORT_RETRIES = 3
local SIMULATOR_FILES = { "%.toml$", "%.json$", "%.bin$" }

local function with_tail(msg, path)
  local t = tail(path, 12)
  return t ~= "" and (msg .. "; last log lines:\n" .. t) or msg
end

-- Spawns argv; a missing or non-executable binary becomes an error naming the variable to set.
local function spawn(argv, opts, var, what)
  local p, err, code = proc.spawn(argv, opts)
  if p then return p end
  if code == "ENOENT" or code == "EACCES" then
    return nil, string.format("cannot run %s '%s': %s; give --var %s=/path/to/%s", what, argv[1], tostring(err), var, what)
  end
  return nil, string.format("cannot start %s '%s': %s", what, argv[1], tostring(err))
end

-- Runs build(run) once per run, whichever deploy comes first; the others wait for its result.
local function once(run, key, build)
  local state = run[key]
  if not state then
    state = { loading = true }
    run[key] = state
    local ok, v, err = pcall(build, run)
    state.loading = false
    if not ok then
      state.err = tostring(v)
      if task.is_cancelled(v) then error(v, 0) end
    elseif not v then
      state.err = err
    else
      state.value = v
    end
  end
  while state.loading do time.sleep(0.01) end
  if state.err then return nil, state.err end
  return state.value
end

-- The run's private work directory.
local function workspace(run)
  return once(run, "local_work", function()
    local dir, err = fs.tmpdir("kmsrun-local")
    if not dir then return nil, "cannot create a work directory: " .. tostring(err) end
    run:defer("remove the local target's work directory", function() fs.remove(dir) end, { kind = "dir", path = dir })
    run.evidence:mkdir("logs") -- beneath the output directory: a planted link is refused
    return dir
  end)
end

-- The simulator ---------------------------------------------------------------------

local function simulator_source(run)
  local dir = run.vars.simulator_dir
  if dir and dir ~= "" then
    local _, kind = fs.exists(dir)
    if kind ~= "directory" then return nil, "simulator_dir '" .. dir .. "' is not a directory" end
    return dir
  end
  return run.vars.simulator_binary:match("^(.*)/[^/]+$") -- nil for a bare name from PATH
end

local function copy_fixtures(from, to)
  for _, name in ipairs(fs.list(from) or {}) do
    for _, pattern in ipairs(SIMULATOR_FILES) do
      if name:match(pattern) then
        local data = fs.read(from .. "/" .. name)
        if data then fs.write(to .. "/" .. name, data) end
        break
      end
    end
  end
end

local function start_simulator(run)
  local root, err = workspace(run)
  if not root then return nil, err end
  local dir = root .. "/simulator"
  fs.mkdir(dir)
  local src, serr = simulator_source(run)
  if serr then return nil, serr end
  if src then copy_fixtures(src, dir) end
  local bin = run.vars.simulator_binary
  if bin:find("/", 1, true) and bin:sub(1, 1) ~= "/" then bin = fs.cwd() .. "/" .. bin end
  local log = run.evidence:path("logs/simulator.log")
  local p, perr = spawn({ bin }, { cwd = dir, stdout = log, stderr = log }, "simulator_binary", "dstack-simulator")
  if not p then return nil, perr end
  run:defer("stop the simulator (" .. tostring(p) .. ")", function() p:kill(2) end, { kind = "process", pid = p.pid })
  local sock = dir .. "/dstack.sock"
  local limit = tonumber(run.vars.simulator_timeout) or 15
  local deadline = time.now() + limit
  while not fs.exists(sock) do
    if not p:running() then
      return nil, with_tail(string.format("the simulator '%s' exited (%s) before creating %s", bin, tostring(p), sock), log)
    end
    if time.now() > deadline then
      return nil, with_tail(string.format("the simulator '%s' did not create %s within %g s (simulator_timeout); "
        .. "does it find its dstack.toml? (simulator_dir)", bin, sock, limit), log)
    end
    time.sleep(0.02)
  end
  return { process = p, socket = sock, address = "unix:" .. sock }
end

-- One KMS -------------------------------------------------------------------------------

local function fixed_port(run, h)
  local list, err = hostport.parse_list(run.vars.local_ports, "local_ports")
  if not list then return nil, err end
  if #list == 0 then return false end
  for i, k in ipairs(run.runbook.kmss) do
    if k == h then
      if not list[i] then return nil, string.format("local_ports lists %d port(s) but %s is KMS number %d", #list, h.name, i) end
      local ok, cerr, code = hostport.check(list[i])
      if not ok then
        return nil, string.format("port %d for %s (local_ports) is not free: %s%s", list[i], h.name, tostring(cerr),
          code == "EADDRINUSE" and "; another process uses it: stop it or choose another port" or "")
      end
      return list[i]
    end
  end
  return false
end

local function address_in_use(log)
  local text = (fs.read(log) or ""):lower()
  return text:find("address already in use", 1, true) or text:find("eaddrinuse", 1, true)
    or text:find("address in use", 1, true)
end

-- Waits until the KMS accepts connections (any HTTP answer) or exits.
-- Returns true, or nil, err, "EXITED" when the process died.
local function started(h, port, limit)
  local deadline = time.now() + limit
  while true do
    if not h.process:running() then return nil, "exited", "EXITED" end
    local res = http.request(string.format("http://127.0.0.1:%d/health", port), { timeout = 1, connect_timeout = 1, fresh = true })
    if res then return true end
    if time.now() > deadline then
      return nil, string.format("%s did not accept connections on port %d within %g s (local_start_timeout)", h.name, port, limit)
    end
    time.sleep(0.05)
  end
end

local function launch(run, h, dir, agent, port)
  local config = dir .. "/kms.toml"
  local ok, werr = fs.write(config, kms_config.toml {
    cert_dir = dir .. "/certs", port = port, address = "127.0.0.1", webhook_url = h.auth_url, site_name = h.name,
  })
  if not ok then return nil, werr end
  local bin = run.vars.kms_binary
  if bin:find("/", 1, true) and bin:sub(1, 1) ~= "/" then bin = fs.cwd() .. "/" .. bin end
  local p, err = spawn({ bin, "-c", config }, { cwd = dir, env = { DSTACK_AGENT_ADDRESS = agent },
    stdout = h.log_path, stderr = h.log_path }, "kms_binary", "dstack-kms")
  if not p then return nil, err end
  h.process = p
  run:defer("stop " .. h.name .. " (" .. tostring(p) .. ")", function() p:kill(2) end, { kind = "process", pid = p.pid })
  return p
end

function T.auth_url_for_kms(run, auth)
  return auth.url
end

function T.deploy(run, h)
  local kerr = require("kmsrun.targets.knobs").refuse(h, T.name)
  if kerr then return nil, kerr end
  local root, err = workspace(run)
  if not root then return nil, err end
  local fixed, ferr = fixed_port(run, h)
  if fixed == nil then return nil, ferr end
  local agent
  if h.spec.attestation == false then
    -- No guest agent at all: an address where nothing will ever listen.
    agent = "unix:" .. root .. "/no-guest-agent/dstack.sock"
  else
    local sim, serr = once(run, "local_simulator", start_simulator)
    if not sim then return nil, serr end
    agent = sim.address
  end
  local dir = root .. "/" .. h.name
  fs.mkdir(dir .. "/certs")
  h.workdir, h.agent_address = dir, agent
  h.log_path = run.evidence:path("logs/" .. h.name .. ".log")
  local limit = tonumber(run.vars.local_start_timeout) or 20
  for attempt = 1, fixed and 1 or PORT_RETRIES do
    local port = fixed
    if not port then
      local perr
      port, perr = hostport.free()
      if not port then return nil, perr end
    end
    local p, lerr = launch(run, h, dir, agent, port)
    if not p then return nil, lerr end
    local ok, serr, code = started(h, port, limit)
    if ok then
      h.port = port
      h.onboard_url = string.format("http://127.0.0.1:%d", port)
      h.runtime_url = string.format("https://127.0.0.1:%d", port)
      -- No CVM boundary: other instances reach it on loopback too.
      h.guest = { onboard_url = h.onboard_url, runtime_url = h.runtime_url }
      return true
    end
    if code ~= "EXITED" then
      p:kill(2)
      return nil, with_tail(serr, h.log_path)
    end
    if not (address_in_use(h.log_path) and not fixed and attempt < PORT_RETRIES) then
      local why = address_in_use(h.log_path) and string.format("port %d is taken by another process", port) or "it exited"
      return nil, with_tail(string.format("%s did not start (%s, %s)", h.name, why, tostring(p)), h.log_path)
    end
    fs.append(h.log_path, string.format("[kmsrun: port %d was taken; retrying with another free port]\n", port))
  end
end

--- After /finish the same port speaks TLS; the probe decides when. A KMS that
-- exited instead (e.g. "Failed to onboard") is reported at once.
function T.runtime_ready(run, h)
  if h.process and not h.process:running() then
    return nil, with_tail(string.format("%s exited (%s)", h.name, tostring(h.process)), h.log_path)
  end
  return true
end

function T.remove(run, h)
  if h.process and h.process:running() then h.process:kill(2) end
  return true
end

-- Attested callers (dsl/attested.lua): the simulator's Attest over the caller's key.
function T.attester(run, of)
  return local_attested.attester(run, of, function() return once(run, "local_simulator", start_simulator) end)
end

function T.log_tail(run, h, n)
  return h.log_path and tail(h.log_path, n) or ""
end

return T
