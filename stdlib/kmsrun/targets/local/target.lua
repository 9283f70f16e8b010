-- The `local` target: each KMS is a user-provided `dstack-kms` process on loopback,
-- configured by the same kms.toml generator as the other targets, attested through
-- its own user-provided dstack simulator (sdk/simulator), as the guide prescribes for
-- development without TDX hardware (kms-protocol.md 11). Attestation is set up the
-- way upstream's e2e does it: a seed per run, the mock-attestation collateral
-- service, seeded simulators, and kms.toml's [core.attestation] trusting the
-- service's root (collateral.lua). Each KMS finds its simulator through
-- DSTACK_AGENT_ADDRESS; one declared with attestation=false is pointed at a socket
-- that does not exist: a KMS with no guest agent at all.
local fs = require "kmsrun.fs"
local tail = require("kmsrun.targets.registry").tail_file
local http = require "kmsrun.http"
local time = require "kmsrun.time"
local kms_config = require "kmsrun.kms.config"
local hostport = require "kmsrun.targets.hostport"
local procs = require "kmsrun.targets.local.procs"
local collateral = require "kmsrun.targets.local.collateral"
local simulator = require "kmsrun.targets.local.simulator"
local local_attested = require "kmsrun.targets.local.attested"

local T = {
  name = "local",
  summary = "dstack-kms processes on loopback, each attested by its own dstack simulator",
  vars = {
    kms_binary = { default = "dstack-kms", help = "the dstack-kms binary to run (searched in PATH) (local target)" },
    simulator_binary = { default = "dstack-simulator", help = "the dstack-simulator binary (searched in PATH) (local target)" },
    mock_attestation_binary = { default = "dstack-mock-attestation", help = "the collateral service binary of crates/mock-attestation (searched in PATH) (local target)" },
    simulator_dir = { default = "", help = "directory with the simulator's files (dstack.toml, *.json, attestation.bin), copied for each KMS (default: the binary's directory) (local target)" },
    simulator_dirs = { default = "", help = "per-KMS simulator files, KMS=DIR comma separated (overrides simulator_dir for those KMS) (local target)" },
    simulator_vm_config = { default = "attested", help = "'attested': each copied sys-config.json reports the vm_config its attestation.bin attests; 'keep': leave the files as they are (local target)" },
    mock_attestation_seed = { default = "", secret = true, help = "64 hex digits: the mock attestation seed (default: a fresh one per run) (local target)" },
    simulator_timeout = { default = "15", help = "seconds for a simulator to create dstack.sock (local target)" },
    collateral_timeout = { default = "15", help = "seconds for the collateral service to answer (local target)" },
    local_ports = { default = "", help = "ports for the KMS instances in declaration order, comma separated (default: free ports) (local target)" },
    local_start_timeout = { default = "20", help = "seconds for a dstack-kms to accept connections on its port (local target)" },
  },
  wait_defaults = { timeout = 60 },
}

local PORT_RETRIES = 3
-- load_config merges /etc/kms/kms.{toml,json} under the -c file
-- (dstack/load_config/src/lib.rs:35-44, 64-71): keys kmsrun does not set come from there.
-- KMSRUN_LOCAL_ETC_DIR replaces it in tests.
T.ETC_DIR = os.getenv("KMSRUN_LOCAL_ETC_DIR") or "/etc/kms"

local function etc_warning(ctx)
  return procs.once(ctx, "etc", function()
    for _, ext in ipairs({ "toml", "json" }) do
      local f = T.ETC_DIR .. "/kms." .. ext
      if fs.exists(f) then
        ctx:note(string.format("warning: %s exists; dstack-kms merges it under kmsrun's kms.toml "
          .. "(load_config/src/lib.rs:64-71), so every key kmsrun does not write comes from it", f))
      end
    end
    return true
  end)
end

-- One KMS -------------------------------------------------------------------------------

local function fixed_port(ctx, h)
  local list, err = hostport.parse_list(ctx.vars.local_ports, "local_ports")
  if not list then return nil, err end
  if #list == 0 then return false end
  for i, k in ipairs(ctx.kmss) do
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
    -- An answer while our process has died came from someone else on that port.
    if res then
      if h.process:running() then return true end
      return nil, "exited", "EXITED"
    end
    if time.now() > deadline then
      return nil, string.format("%s did not accept connections on port %d within %g s (local_start_timeout)", h.name, port, limit)
    end
    time.sleep(0.05)
  end
end

--- The kms.toml of one KMS. trust: { pccs = URL, roots = DIR } of the run's collateral
-- service, or nil (a KMS without guest agent verifies nothing of its own).
-- [core.attestation] as upstream's e2e writes it (run-platform.sh:186-201).
function T.kms_toml(h, dir, port, trust)
  return kms_config.toml {
    cert_dir = dir .. "/certs", port = port, address = "127.0.0.1", webhook_url = h.auth_url, site_name = h.name,
    attestation = trust and {
      insecure_allow_external_trust_anchors = true,
      urls = { pccs = trust.pccs },
      root_ca = { tdx = trust.roots .. "/tdx-root-ca.pem" },
    } or nil,
  }
end

local function launch(ctx, h, dir, agent, port, trust)
  local config = dir .. "/kms.toml"
  local ok, werr = fs.write(config, T.kms_toml(h, dir, port, trust))
  if not ok then return nil, werr end
  local bin = procs.resolve(ctx.vars.kms_binary)
  local p, err = procs.spawn({ bin, "-c", config }, { cwd = dir, env = { DSTACK_AGENT_ADDRESS = agent },
    stdout = h.log_path, stderr = h.log_path }, "kms_binary", "dstack-kms")
  if not p then return nil, err end
  h.process = p
  ctx:defer("stop " .. h.name .. " (" .. tostring(p) .. ")", function() p:kill(2) end, { kind = "process", pid = p.pid })
  return p
end

function T.auth_url_for_kms(ctx, auth)
  return auth.url
end

-- The guest agent of h: its own seeded simulator (after the collateral service), or
-- none. Returns agent address, trust (or nil), or nil, err.
local function guest_agent(ctx, h, root)
  if h.spec.attestation == false then
    -- No guest agent at all: an address where nothing will ever listen.
    return "unix:" .. root .. "/no-guest-agent/dstack.sock"
  end
  local svc, cerr = collateral.start(ctx)
  if not svc then return nil, cerr end
  local sim, serr = simulator.start(ctx, h)
  if not sim then return nil, serr end
  h.simulator = sim
  return sim.address, { pccs = svc.url, roots = svc.roots }
end

function T.deploy(ctx, h)
  local kerr = require("kmsrun.targets.knobs").refuse(h, T.name)
  if kerr then return nil, kerr end
  local root, err = procs.workspace(ctx)
  if not root then return nil, err end
  etc_warning(ctx)
  local fixed, ferr = fixed_port(ctx, h)
  if fixed == nil then return nil, ferr end
  local agent, trust = guest_agent(ctx, h, root)
  if not agent then return nil, trust end
  local dir = root .. "/" .. h.name
  fs.mkdir(dir .. "/certs")
  h.workdir, h.agent_address = dir, agent
  h.log_path = ctx.evidence:path("logs/" .. h.name .. ".log")
  local limit = tonumber(ctx.vars.local_start_timeout) or 20
  for attempt = 1, fixed and 1 or PORT_RETRIES do
    local port = fixed
    if not port then
      local perr
      port, perr = procs.free_port(ctx)
      if not port then return nil, perr end
    end
    local p, lerr = launch(ctx, h, dir, agent, port, trust)
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
      return nil, procs.with_tail(serr, h.log_path)
    end
    if not (address_in_use(h.log_path) and not fixed and attempt < PORT_RETRIES) then
      local why = address_in_use(h.log_path) and string.format("port %d is taken by another process", port) or "it exited"
      return nil, procs.with_tail(string.format("%s did not start (%s, %s)", h.name, why, tostring(p)), h.log_path)
    end
    fs.append(h.log_path, string.format("[kmsrun: port %d was taken; retrying with another free port]\n", port))
  end
end

--- The vm_config h's guest agent attests (from its attestation.bin), for the check
-- that GetAttestationInfo reports the same OS image (capture_attestation).
function T.attested_vm_config(ctx, h)
  return h.attested_vm_config
end

--- After /finish the same port speaks TLS; the probe decides when. A KMS that
-- exited instead (e.g. "Failed to onboard") is reported at once.
function T.runtime_ready(ctx, h)
  if h.process and not h.process:running() then
    return nil, procs.with_tail(string.format("%s exited (%s)", h.name, tostring(h.process)), h.log_path)
  end
  return true
end

function T.remove(ctx, h)
  if h.process and h.process:running() then h.process:kill(2) end
  return true
end

-- Attested callers (dsl/attested.lua): a simulator's Attest over the caller's key. A
-- KMS attests through its own simulator; an app gets a simulator of its own (its
-- fixture files from simulator_dirs[<app>] or simulator_dir), started once.
function T.attester(ctx, of)
  return local_attested.attester(ctx, of, function()
    if of.__kind == "kms" then
      if not of.simulator then return nil, of.name .. " has no simulator yet (deploy it first)" end
      return of.simulator
    end
    return procs.once(ctx, "simulator:" .. of.name, function() return simulator.start(ctx, of) end)
  end)
end

function T.log_tail(ctx, h, n)
  return h.log_path and tail(h.log_path, n) or ""
end

return T
