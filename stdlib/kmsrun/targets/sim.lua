-- The `sim` target: each KMS is a `kmsrun serve kms-sim` child process — kmsrun's
-- own emulator of the KMS protocol — on loopback. Runs anywhere, no hardware.
-- Its results describe the emulator, never the real KMS.
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local kms_config = require "kmsrun.kms.config"
local tail = require("kmsrun.targets.registry").tail_file
local sim_guest = require "kmsrun.targets.sim_guest"
local attested = require "kmsrun.targets.sim_attested"

local T = {
  name = "sim",
  summary = "kms-sim emulator processes on loopback (an emulator of the KMS protocol, not the real KMS)",
  vars = {
    sim_image = { default = "dstack-0.5.7-sim", help = "OS image name the emulated instances report (sim target)" },
    sim_mutation = { default = "", help = "TEST ONLY: emulator mutations that re-create a bug, comma separated: KMS and auth switches of kmsrun.emu.mutations (sim target)" },
    sim_faults = { default = "", help = "TEST ONLY: emulator fault switches, comma separated (sim target)" },
    sim_leak_keys_to = { default = "", help = "TEST ONLY: file where the emulators log the private keys they hand out, to prove the evidence has none (sim target)" },
    sim_guest_mode = { default = "", help = "TEST ONLY: guest-agent failure modes of a real dstack-kms with the simulator, comma separated: shared-identity, split-vm-config, unverifiable-quote (sim target)" },
  },
}

local LISTEN_TIMEOUT = 15

-- Waits for the emulator's "listening on <scheme>://host:port" line (the n-th one).
local function listening(ctx, h, scheme, nth)
  -- An enclosing deadline (case, run) cuts the wait short; its guard reports it.
  local deadline = time.now() + math.min(LISTEN_TIMEOUT, ctx:time_left() + 1)
  -- 2 ms first (an emulator listens within a few ms on an idle machine), backing off to
  -- 20 ms: many instances starting at once must not spend the CPU they start with on
  -- re-reading their stdout.
  local pause = 0.002
  while true do
    local seen = 0
    for url in (fs.read(h.stdout_path) or ""):gmatch("listening on (" .. scheme .. "://[%w%.%-:%[%]]+)") do
      seen = seen + 1
      if seen == nth then return url end
    end
    if not h.process:running() then
      return nil, string.format("%s exited (%s) before listening; last log lines:\n%s",
        h.name, tostring(h.process), tail(h.log_path))
    end
    if time.now() > deadline then
      return nil, string.format("%s did not listen within %d s; last log lines:\n%s", h.name, LISTEN_TIMEOUT, tail(h.log_path))
    end
    time.sleep(pause)
    pause = math.min(pause * 1.5, 0.02)
  end
end

--- The vm_config the emulated KMS attests (capture_attestation compares it).
function T.attested_vm_config(ctx, h)
  return h.log_path and sim_guest.attested_vm_config(h.log_path)
end

function T.auth_url_for_kms(ctx, auth)
  return auth.url
end

--- The kms.toml of one emulated KMS (port 0: the emulator picks one and prints it).
-- Its quotes are the emulator's own, verified without trust anchors, so the vendor
-- roots stay configured, as in upstream's kms.toml.
function T.kms_toml(h, cert_dir, image_download_url)
  return kms_config.toml {
    cert_dir = cert_dir, port = 0, address = "127.0.0.1",
    webhook_url = h.auth_url, site_name = h.name, image_download_url = image_download_url,
  }
end

function T.deploy(ctx, h)
  local work, err = fs.tmpdir("kmsrun-" .. h.name)
  if not work then return nil, err end
  ctx:defer("remove work directory of " .. h.name, function() fs.remove(work) end, { kind = "dir", path = work })
  h.workdir = work
  local cert_dir = work .. "/certs"
  fs.mkdir(cert_dir)
  -- The emulator writes its "listening on" line, certificates and state here: a
  -- nearly full TMPDIR would show only as "did not listen" 15 s later. A probe
  -- of what an instance needs names the cause at once.
  local probe = work .. "/space-probe"
  local pok, perr = fs.write(probe, string.rep("\0", 256 * 1024))
  fs.remove(probe)
  if not pok then
    return nil, string.format("cannot write in the work directory %s (TMPDIR=%s): %s", work, os.getenv("TMPDIR") or "/tmp",
      tostring(perr))
  end
  local config = work .. "/kms.toml"
  local images, ierr = attested.image_server(ctx, h)
  if ierr then return nil, ierr end
  local ok, werr = fs.write(config, T.kms_toml(h, cert_dir, images))
  if not ok then return nil, werr end
  h.sim_salt = crypto.hex(crypto.random(16))
  local argv = { proc.exe(), "serve", "kms-sim", "-c", config,
    "--image", h.spec.image or ctx.vars.sim_image,
    "--salt", h.sim_salt }
  if h.spec.attestation == false then
    argv[#argv + 1] = "--no-attestation"
  else
    local extra, gerr = sim_guest.argv(ctx.vars.sim_guest_mode, work)
    if not extra then return nil, gerr end
    table.move(extra, 1, #extra, #argv + 1, argv)
  end
  for _, a in ipairs(attested.knob_args(h.spec)) do argv[#argv + 1] = a end
  local switches, serr = attested.mutations(ctx.vars.sim_mutation)
  if not switches then return nil, serr end
  if #switches.kms > 0 then
    argv[#argv + 1] = "--mutation"
    argv[#argv + 1] = table.concat(switches.kms, ",")
  end
  if ctx.vars.sim_leak_keys_to ~= "" then
    argv[#argv + 1] = "--leak-keys-to"
    argv[#argv + 1] = ctx.vars.sim_leak_keys_to
  end
  for fault in (ctx.vars.sim_faults or ""):gmatch("[^,%s]+") do
    argv[#argv + 1] = "--fault"
    argv[#argv + 1] = fault
  end
  h.stdout_path = work .. "/stdout"
  h.log_path = ctx.evidence:path("logs/" .. h.name .. ".log")
  ctx.evidence:mkdir("logs") -- beneath the output directory: a planted link is refused
  local p, perr = proc.spawn(argv, { cwd = work, stdout = h.stdout_path, stderr = h.log_path })
  if not p then return nil, perr end
  h.process = p
  ctx:defer("stop " .. h.name .. " (" .. tostring(p) .. ")", function() p:kill(2) end, { kind = "process", pid = p.pid })
  local url, lerr = listening(ctx, h, "http", 1)
  if not url then return nil, lerr end
  h.onboard_url = url
  h.runtime_url = url:gsub("^http:", "https:")
  h.guest = { onboard_url = h.onboard_url, runtime_url = h.runtime_url }
  return true
end

-- After /finish the emulator switches to TLS; it announces the runtime listener.
function T.runtime_ready(ctx, h)
  local url, err = listening(ctx, h, "https", 1)
  if not url then return nil, err end
  h.runtime_url = url
  h.guest.runtime_url = url
  return true
end

function T.remove(ctx, h)
  if h.process and h.process:running() then h.process:kill(2) end
  return true
end

-- Attested callers (dsl/attested.lua) from the emulator's identity derivation.
T.attester = attested.attester
-- The auth emulator's share of sim_mutation (the runner starts the auth servers).
T.auth_mutations = attested.auth_mutations

-- Whether the instance's process has exited, as "its process exited (...)", else nil.
-- A crash resets the connection before the exit is reaped: wait a moment for it
-- (unless no_wait).
function T.exited(ctx, h, no_wait)
  if not h.process then return nil end
  for _ = 1, no_wait and 1 or 50 do
    if not h.process:running() then return "its process exited (" .. tostring(h.process):match("%((.-)%)$") .. ")" end
    if not no_wait then time.sleep(0.005) end
  end
  return nil
end

function T.log_tail(ctx, h, n)
  return h.log_path and tail(h.log_path, n) or ""
end

return T
