-- One emulated KMS instance, as the services see it (runtime.lua, onboard.lua and the
-- modules they call take it as `inst`): its config, identity, mutations and faults, its
-- log, the finish request, and running one prpc request; and how emulator.start's options
-- become an instance (M.build). The process side (listeners, modes, the handle) is
-- emulator.lua.
local crypto = require "kmsrun.crypto"
local time = require "kmsrun.time"
local toml = require "kmsrun.lib.toml"
local config = require "kmsrun.emu.kms.config"
local identity = require "kmsrun.emu.kms.identity"
local A = require "kmsrun.emu.kms.attestation"
local W = require "kmsrun.emu.kms.webhook"
local store = require "kmsrun.emu.kms.store"
local faults = require "kmsrun.emu.kms.faults"
local prpc = require "kmsrun.emu.kms.prpc"
local hex = require "kmsrun.lib.hex"
local core = require "kmsrun.core"
local cjson = require "cjson.safe"
local guest_modes = require "kmsrun.emu.kms.guest_modes"

local M = {}

local Inst = {}
Inst.__index = Inst

-- Logging: one line per event, like a service's log; newlines escaped to keep one line.
function Inst:log(fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(time.wall())) .. string.format(".%03dZ", math.floor((time.wall() % 1) * 1000))
  local line = string.format("%s %s[%s] %s", ts, "kms-sim", self.name, (msg:gsub("\n", "\\n")))
  self.log_fn(line)
end

function Inst:mutation(name) return self.mutations[name] == true end

-- Test-only evidence: every private key handed out in a response, appended to a file.
function Inst:leak(method, kind, value)
  if not self.leak_path then return end
  local text = value:match("^%-%-%-%-%-BEGIN") and value or hex.encode(value)
  store.append(self.leak_path, string.format("# kms-sim (emulator) handed out %s in %s\n%s\n", kind, method, text))
end

function Inst:request_finish(by)
  if not self.finish_requested then
    self.finish_requested = by
    self:log("finish requested by %s", by)
    if self.finish_waiter then core.wake(self.finish_waiter) end
  end
end

-- Faults that act once the method is known (crash, slow, status500, badjson).
function Inst:apply_faults(call)
  local f = self.faults
  local m = call.method
  if f.crash[m] then
    self:log("FAULT crash=%s: exiting with status 1", m)
    io.stderr:flush()
    os.exit(1, false)
  end
  if f.slow[m] then time.sleep(f.slow[m]) end
  if f.status500[m] then
    return 500, "kms-sim (emulator) fault injection: status500=" .. m, { ["Content-Type"] = "text/plain" }
  end
  if f.badjson[m] then
    return 200, '{"fault":"badjson", "truncated', { ["Content-Type"] = "application/json" }
  end
end

-- Runs one prpc request: routing, faults, the service, and the log line.
function Inst:rpc(service, req, early)
  local started = time.now()
  local st, body, headers, info = prpc.handle(service, req, {
    early = early,
    before = function(call) return self:apply_faults(call) end,
  })
  if not st then return nil end
  local name = service.prefix .. (info and info.method or "?")
  local ms = (time.now() - started) * 1000
  if info and info.error then
    self:log("rpc %s %s -> %d error: %s (%.0f ms)", req.method, name, st, info.error, ms)
  else
    self:log("rpc %s %s -> %d ok (%.0f ms)", req.method, name, st, ms)
  end
  return st, body, headers, info
end

-- Host aliases for outgoing URLs (e.g. 10.0.2.2 -> 127.0.0.1 for a fake VMM setup).
local function rewriter(aliases)
  return function(url)
    local scheme, host, rest = url:match("^(%a[%w+.-]*://)([^/:?#]+)(.*)$")
    if scheme and aliases[host] then return scheme .. aliases[host] .. rest end
    return url
  end
end

local function parse_aliases(list)
  local map = {}
  if type(list) == "table" and #list == 0 then
    for k, v in pairs(list) do map[k] = v end
    return map
  end
  for _, spec in ipairs(list or {}) do
    local from, to = spec:match("^([^=]+)=(.+)$")
    if not from then return nil, "bad host alias '" .. spec .. "' (expected FROM=TO)" end
    map[from] = to
  end
  return map
end

local function bytes_opt(v, what)
  if v == nil or v == "" then return nil end
  if #v % 2 == 0 and v:match("^%x+$") then return (hex.decode(v)) end
  return nil, what .. " must be hex"
end

-- Guest agent availability (11.1): --no-attestation, or DSTACK_AGENT_ADDRESS naming a Unix
-- socket that does not exist, gives the emulated "no guest agent" failures.
local function agent_unavailable(opts)
  if opts.no_attestation then return true end
  local addr = opts.agent_address or os.getenv("DSTACK_AGENT_ADDRESS")
  if addr and addr:match("^unix:") and not store.exists(addr:sub(6)) then return true end
  return false
end

local function parse_seconds(s)
  if type(s) == "number" then return s end
  local n, unit = tostring(s):match("^(%d+)(%a*)$")
  n = tonumber(n)
  if not n then return 120 end
  return n * (({ s = 1, m = 60, h = 3600, [""] = 1 })[unit] or 1)
end

--- Builds an instance from emulator.start's options; returns it or nil, error.
function M.build(opts)
  -- opts.config: a table, a TOML path, or a list of those (later layers override earlier).
  local layers = {}
  if type(opts.config) == "table" and opts.config[1] ~= nil then
    for _, l in ipairs(opts.config) do layers[#layers + 1] = l end
  elseif opts.config ~= nil then
    layers[1] = opts.config
  end
  local cfg_file
  for _, l in ipairs(layers) do if type(l) == "string" then cfg_file = l end end
  local cfg, err = config.load(layers)
  if not cfg then return nil, err end
  local mutations, merr = faults.mutations(opts.mutations or os.getenv("KMSRUN_SIM_MUTATION") or {})
  if not mutations then return nil, merr end
  local fl, ferr = faults.faults(opts.faults)
  if not fl then return nil, ferr end
  local aliases, aerr = parse_aliases(opts.host_alias)
  if not aliases then return nil, aerr end
  local paths = config.paths(cfg)
  store.mkdir(paths.dir)

  -- Compose bytes: --compose-file, else the kms.toml itself (a KMS CVM's compose embeds it).
  local compose = opts.compose
  if not compose then compose = cfg_file and store.read(cfg_file) or toml.encode(cfg) end
  -- The per-deployment salt lives next to the keys: a restart keeps the instance id (as a
  -- CVM's data disk does), a fresh cert_dir is a fresh deployment.
  local salt, serr = bytes_opt(opts.salt, "salt")
  if serr then return nil, serr end
  local device, derr = bytes_opt(opts.device, "device")
  if derr then return nil, derr end
  local saved = store.read(paths.identity)
  saved = saved and cjson.decode(saved)
  if not salt and type(saved) == "table" and type(saved.salt) == "string" then salt = hex.decode(saved.salt) end
  salt = salt or crypto.random(16)
  store.write(paths.identity, string.format('{"note":"kms-sim (emulator) identity inputs","salt":"%s"}', hex.encode(salt)))
  if opts.tcb_status ~= nil and (type(opts.tcb_status) ~= "string" or opts.tcb_status == "") then
    return nil, "tcb_status must be a non-empty string"
  end
  local id = identity.derive { image = opts.image, compose = compose, salt = salt, device = device,
    tcb_status = opts.tcb_status, advisory_ids = opts.advisories }

  local inst = setmetatable({
    cfg = cfg, paths = paths, identity = id, mutations = mutations, faults = fl,
    name = opts.name or "kms", leak_path = opts.leak_keys_to, old_format_cert = opts.old_format_cert == true,
    log_fn = opts.log or function(line) io.stderr:write(line, "\n"); io.stderr:flush() end,
  }, Inst)
  inst.rewrite = rewriter(aliases)
  local agent_opts, gerr = guest_modes.apply(id, opts)
  if not agent_opts then return nil, gerr end
  agent_opts.unavailable = agent_unavailable(opts)
  inst.agent = A.agent(id, agent_opts)
  inst.webhook = W.new(cfg, { rewrite = inst.rewrite })
  inst.download_timeout = parse_seconds(cfg.core.image.download_timeout)
  return inst
end

return M
