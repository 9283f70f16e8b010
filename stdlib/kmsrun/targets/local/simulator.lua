-- One dstack simulator per KMS, each in its own directory with its own copy of the
-- fixture files, started as `dstack-simulator -c <dir>/dstack.toml` in that directory
-- (it listens on unix:./dstack.sock relative to its working directory,
-- guest-agent-simulator/dstack.toml:27-29). One simulator for every KMS would give
-- them one guest agent and so one attested identity.
--
-- Each copy's dstack.toml gets the run's mock_attestation_seed, and its sys-config.json
-- the vm_config attested by its attestation.bin (fixtures.lua says why), unless
-- simulator_vm_config=keep.
local fs = require "kmsrun.fs"
local fixtures = require "kmsrun.targets.local.fixtures"
local procs = require "kmsrun.targets.local.procs"
local collateral = require "kmsrun.targets.local.collateral"

local M = {}

local FILES = { "%.toml$", "%.json$", "%.bin$" }

--- simulator_dirs: "kms-src=DIR,kms-dst=DIR" -> { ["kms-src"] = DIR, ... } or nil, err.
function M.parse_dirs(text)
  local map = {}
  for item in (text or ""):gmatch("[^,]+") do
    local name, dir = item:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
    if not name or dir == "" then return nil, "simulator_dirs: '" .. item .. "' is not KMS=DIR" end
    map[name] = dir
  end
  return map
end

-- Where h's fixture files come from: simulator_dirs, simulator_dir, or the binary's directory.
local function source(ctx, h)
  local dirs, err = M.parse_dirs(ctx.vars.simulator_dirs)
  if not dirs then return nil, err end
  local dir, var = dirs[h.name], "simulator_dirs"
  if not dir and (ctx.vars.simulator_dir or "") ~= "" then dir, var = ctx.vars.simulator_dir, "simulator_dir" end
  if dir then
    local _, kind = fs.exists(dir)
    if kind ~= "directory" then return nil, string.format("%s: '%s' (for %s) is not a directory", var, dir, h.name) end
    return dir
  end
  return ctx.vars.simulator_binary:match("^(.*)/[^/]+$") or false -- false: a bare name from PATH
end

local function copy(from, to)
  for _, name in ipairs(fs.list(from) or {}) do
    for _, pattern in ipairs(FILES) do
      if name:match(pattern) then
        local data = fs.read(from .. "/" .. name)
        if data then fs.write(to .. "/" .. name, data, { mode = 384 }) end
        break
      end
    end
  end
end

-- Makes sys-config.json report the attested vm_config; returns a note for the report or nil.
local function reconcile(ctx, h, dir)
  local mode = ctx.vars.simulator_vm_config or "attested"
  if mode ~= "attested" and mode ~= "keep" then
    return nil, "simulator_vm_config must be 'attested' or 'keep', not '" .. mode .. "'"
  end
  local attested = fixtures.attested_vm_config(fs.read(dir .. "/attestation.bin"))
  local sys_text = fs.read(dir .. "/sys-config.json")
  if not attested or not sys_text then return nil end
  local sys = require("kmsrun.lib.json").decode(sys_text)
  local reported = type(sys) == "table" and sys.vm_config or nil
  local a, r = fixtures.os_image_hash(attested), fixtures.os_image_hash(reported)
  h.attested_vm_config = attested
  if a == r then return nil end
  if mode == "keep" then
    return string.format("warning: %s's simulator files carry two OS image hashes: sys-config.json reports %s, "
      .. "attestation.bin attests %s (kept: simulator_vm_config=keep)", h.name, tostring(r), tostring(a))
  end
  local text, err = fixtures.with_vm_config(sys_text, attested)
  if not text then return nil, err end
  fs.write(dir .. "/sys-config.json", text, { mode = 384 })
  return string.format("%s's simulator: sys-config.json's vm_config (os_image_hash %s) replaced by the one "
    .. "attestation.bin attests (%s), so GetAttestationInfo and the attested config agree", h.name, tostring(r), tostring(a))
end

--- Starts h's simulator; returns { address, socket, dir } or nil, err.
function M.start(ctx, h)
  local root, err = procs.workspace(ctx)
  if not root then return nil, err end
  local seed, serr = collateral.seed(ctx)
  if not seed then return nil, serr end
  local dir = root .. "/simulator-" .. h.name
  fs.mkdir(dir, { mode = 448 })
  local src, srcerr = source(ctx, h)
  if src == nil then return nil, srcerr end
  if src then copy(src, dir) end
  local toml_text, terr = fixtures.with_seed(fs.read(dir .. "/dstack.toml") or "", seed)
  if not toml_text then return nil, terr end
  fs.write(dir .. "/dstack.toml", toml_text, { mode = 384 })
  local note, rerr = reconcile(ctx, h, dir)
  if rerr then return nil, rerr end
  if note then ctx:note(note) end

  local sock = dir .. "/" .. fixtures.socket_name(toml_text)
  -- sun_path holds 108 bytes: a longer path would only show as a bind error in its log.
  if #sock > 107 then
    return nil, string.format("the simulator socket path %s is %d bytes, more than a Unix socket allows (107); "
      .. "set TMPDIR to a shorter directory or use a shorter KMS name", sock, #sock)
  end
  local bin = procs.resolve(ctx.vars.simulator_binary)
  local log = ctx.evidence:path("logs/simulator-" .. h.name .. ".log")
  local p, perr = procs.spawn({ bin, "-c", dir .. "/dstack.toml" }, { cwd = dir, stdout = log, stderr = log },
    "simulator_binary", "dstack-simulator")
  if not p then return nil, perr end
  ctx:defer("stop the simulator of " .. h.name .. " (" .. tostring(p) .. ")", function() p:kill(2) end,
    { kind = "process", pid = p.pid })
  local limit = tonumber(ctx.vars.simulator_timeout) or 15
  local ok, why = procs.await(p, function() return fs.exists(sock) end, limit)
  if why == "EXITED" then
    return nil, procs.with_tail(string.format("the simulator '%s' exited (%s) before creating %s", bin, tostring(p), sock), log)
  elseif why == "TIMEOUT" then
    return nil, procs.with_tail(string.format("the simulator '%s' did not create %s within %g s (simulator_timeout); "
      .. "does it find its dstack.toml? (simulator_dir)", bin, sock, limit), log)
  end
  return ok and { process = p, socket = sock, address = "unix:" .. sock, dir = dir }
end

return M
