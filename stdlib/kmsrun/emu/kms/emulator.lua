-- kms-sim: kmsrun's EMULATOR of the dstack KMS protocol (kms-protocol.md), for tests that
-- need KMS instances without TEE hardware. It is not the KMS: its attestation is emulated
-- (attestation.lua) and what it does proves nothing about the real KMS.
--
-- Lifecycle (2.2): keys in cert_dir -> runtime mode (TLS); no keys -> onboard mode (plain
-- HTTP) until /finish or Onboard.Finish, then, in the same process, runtime mode on
-- rpc.port (the onboard port when both are configured equal, also when both are 0).
--
--   local sim = require "kmsrun.emu.kms.emulator"
--   local h = assert(sim.start { config = cfg_table_or_path, image = "dstack-0.5.7" })
--   h.port, h.mode, h:url(), h:wait_mode("runtime"), h.identity, h:close()
-- This file is the process side: the handle, the listeners and the mode changes; the
-- instance the services see, and how the options make it, is instance.lua.
local crypto = require "kmsrun.crypto"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local server = require "kmsrun.lib.http_server"
local identity = require "kmsrun.emu.kms.identity"
local A = require "kmsrun.emu.kms.attestation"
local K = require "kmsrun.emu.kms.keys"
local store = require "kmsrun.emu.kms.store"
local faults = require "kmsrun.emu.kms.faults"
local selfauth = require "kmsrun.emu.kms.selfauth"
local core = require "kmsrun.core"
local runtime = require "kmsrun.emu.kms.runtime"
local onboard = require "kmsrun.emu.kms.onboard"
local config_attestation = require "kmsrun.emu.kms.config_attestation"
local instance = require "kmsrun.emu.kms.instance"

local M = {}

M.NAME = "kms-sim (emulator)"

-- The handle ------------------------------------------------------------------

local Handle = {}
Handle.__index = Handle

function Handle:url(path)
  return self.inst.server and self.inst.server:url(path) or nil
end

--- Waits until the instance is in `mode` ("onboard", "runtime", "exited"); returns true or
-- nil, error on timeout or if it exited instead.
function Handle:wait_mode(mode, timeout)
  local deadline = time.now() + (timeout or 15)
  while self.mode ~= mode do
    if self.mode == "exited" or self.mode == "closed" then
      return nil, string.format("%s %s (%s)", M.NAME, self.mode, tostring(self.exit_error))
    end
    if time.now() > deadline then return nil, "timed out waiting for mode " .. mode end
    time.sleep(0.005)
  end
  return true
end

--- Waits until the instance has exited (or was closed); returns exit code, error text.
function Handle:wait()
  while self.mode ~= "exited" and self.mode ~= "closed" do time.sleep(0.02) end
  return self.exit_code or 0, self.exit_error
end

function Handle:close()
  if self.mode == "closed" or self.mode == "exited" then return end
  self.mode = "closed"
  if self.lifecycle and not self.lifecycle.done and self.lifecycle ~= task.current() then self.lifecycle:cancel() end
  if self.inst.server then self.inst.server:close(); self.inst.server = nil end
  self.inst:log("closed")
end

Handle.__close = Handle.close

function Handle:__tostring()
  return string.format("%s %s (%s)", M.NAME, self:url() or "-", self.mode)
end

-- Lifecycle ---------------------------------------------------------------------

local function exit_with(h, msg)
  h.inst:log("exiting: %s", msg)
  if h.inst.server then h.inst.server:close(); h.inst.server = nil end
  h.mode, h.exit_code, h.exit_error = "exited", 1, msg
  if h.on_exit then h.on_exit(h) end
  return nil, msg
end

local function listen(h, handler, opts)
  local inst = h.inst
  if inst.faults.listen_delay > 0 then
    inst:log("FAULT listen-delay: listening in %g s", inst.faults.listen_delay)
    time.sleep(inst.faults.listen_delay)
  end
  opts.on_error = function(err, req)
    inst:log("handler for %s %s failed: %s", req.method, req.path, tostring(err))
  end
  local srv, err = server.listen(handler, opts)
  if not srv then return nil, err end
  inst.server = srv
  h.port, h.host = srv.port, srv.host
  if h.on_listen then h.on_listen(h, srv:url()) end
  return srv
end

local function start_runtime(h, port_hint)
  local inst = h.inst
  local cfg = inst.cfg
  -- 2.7: reissue; the domain is auto_bootstrap_domain or the stored rpc-domain.
  local domain = cfg.core.onboard.auto_bootstrap_domain
  if domain == "" then domain = (store.read(inst.paths.rpc_domain) or ""):match("^%s*(.-)%s*$") end
  local ok, err = K.reissue(inst, inst.paths, domain)
  if not ok then
    if cfg.core.attest_rpc_cert then
      return exit_with(h, "Failed to reissue the attested KMS RPC certificate; refusing to start with a potentially unattested certificate: " .. err)
    end
    inst:log("WARN failed to reissue the KMS RPC certificate: %s", err)
  end
  local state, serr = runtime.state(inst)
  if not state then return exit_with(h, serr) end
  inst.state = state
  if not cfg.core.enforce_self_authorization then
    inst:log("WARN self-authorization is disabled; trusted RPCs will not be gated by KMS self-attestation")
  end
  local tls_files = {}
  for k, path in pairs { cert = cfg.rpc.tls.certs, key = cfg.rpc.tls.key, client_ca = cfg.rpc.tls.mutual.ca_certs } do
    local data, rerr = store.read(path)
    if not data then return exit_with(h, "failed to read " .. path .. ": " .. tostring(rerr)) end
    tls_files[k] = data
  end
  tls_files.require_client_cert = cfg.rpc.tls.mutual.mandatory
  local port = cfg.rpc.port
  if port_hint and cfg.rpc.port == cfg.core.onboard.port then port = port_hint end
  local srv, lerr = listen(h, runtime.handler(inst), {
    host = cfg.rpc.address, port = port, tls = tls_files,
  })
  if not srv then return exit_with(h, "failed to listen on " .. cfg.rpc.address .. ":" .. port .. ": " .. tostring(lerr)) end
  h.mode = "runtime"
  inst:log("runtime mode: listening on %s (TLS); k256_pubkey=%s", srv:url(), crypto.hex(state.k256_pubkey))
  return true
end

local function auto_bootstrap(h, domain)
  local inst = h.inst
  local derr = onboard.validate_domain(domain)
  if derr then return exit_with(h, derr) end
  local ok, err = selfauth.bootstrap_check(inst)
  if not ok then return exit_with(h, "KMS is not allowed to auto-bootstrap: " .. err) end
  local keys, kerr = K.build(inst, K.new_keys(), domain)
  if not keys then return exit_with(h, "Failed to generate keys: " .. kerr) end
  local sok, serr = K.store(inst.paths, keys)
  if not sok then return exit_with(h, serr) end
  inst:log("auto-bootstrapped for domain %s", domain)
  return true
end

-- Waits for finish in onboard mode, then switches to runtime mode in this process.
local function onboard_lifecycle(h)
  local inst = h.inst
  while not inst.finish_requested do
    inst.finish_waiter = coroutine.running()
    core.suspend("kms-sim: waiting for finish")
  end
  inst.finish_waiter = nil
  -- Graceful: the triggering answer is handed to the server when its handler
  -- returns; a few loop turns later it is on the wire (loopback), then close.
  time.sleep(0.005)
  local port = inst.server and inst.server.port
  if inst.server then inst.server:close(); inst.server = nil end
  inst:log("onboard server stopped")
  if not K.exist(inst.paths) then return exit_with(h, "Failed to onboard") end
  return start_runtime(h, port)
end

--- Starts an emulated KMS instance in this process (must run in a task). Options:
-- config (table, TOML path, or a list of them), image, compose (bytes), salt (hex), device (hex),
-- tcb_status, advisories (list), old_format_cert (bool), no_attestation, agent_address, mutations (list or "a,b"), faults (list of specs),
-- leak_keys_to (path), host_alias (list of "FROM=TO" or a map), name, log (fn(line)),
-- vm_config, reported_vm_config, unverifiable_quote (guest_modes.lua),
-- on_listen (fn(handle, url)), on_exit (fn(handle)).
-- Returns a handle once the first listener is up (or the instance exited at startup:
-- then nil, error, handle).
function M.start(opts)
  opts = opts or {}
  local inst, err = instance.build(opts)
  if not inst then return nil, err end
  local h = setmetatable({ inst = inst, mode = "starting", on_listen = opts.on_listen, on_exit = opts.on_exit }, Handle)
  h.identity = identity.summary(inst.identity)
  h.cert_dir = inst.paths.dir
  local cfg = inst.cfg

  inst:log("%s starting: image=%s mr_aggregated=%s os_image_hash=%s", M.NAME, h.identity.image,
    h.identity.mr_aggregated, h.identity.os_image_hash)
  if inst.agent.unavailable then inst:log("WARN no guest agent: attestation unavailable (%s)", A.NO_AGENT) end
  for name in pairs(inst.mutations) do
    inst:log("WARNING: TEST-ONLY MUTATION ACTIVE: %s -- %s; this emulator deliberately misbehaves", name,
      faults.MUTATIONS[name])
  end
  if faults.any(inst.faults) then inst:log("WARNING: TEST-ONLY FAULT INJECTION ACTIVE") end
  if not cfg.core.attest_rpc_cert then
    inst:log("WARN attest_rpc_cert = false: the RPC certificate carries no attestation (development only)")
  end

  -- The real KMS loads its attestation verifier before serving, in either mode.
  local vok, verr = config_attestation.load_verifier(cfg.core.attestation)
  if not vok then exit_with(h, verr); return nil, h.exit_error, h end

  if not K.exist(inst.paths) and cfg.core.onboard.enabled then
    local domain = cfg.core.onboard.auto_bootstrap_domain
    if domain ~= "" then
      if not auto_bootstrap(h, domain) then return nil, h.exit_error, h end
    else
      local srv, lerr = listen(h, onboard.handler(inst), {
        host = cfg.core.onboard.address, port = cfg.core.onboard.port,
      })
      if not srv then
        exit_with(h, "failed to listen on " .. cfg.core.onboard.address .. ":" .. cfg.core.onboard.port .. ": " .. tostring(lerr))
        return nil, h.exit_error, h
      end
      h.mode = "onboard"
      inst:log("onboard mode: listening on %s (plain HTTP)", srv:url())
      h.lifecycle = task.spawn(onboard_lifecycle, h)
      return h
    end
  end
  if not start_runtime(h, nil) then return nil, h.exit_error, h end
  return h
end

return M
