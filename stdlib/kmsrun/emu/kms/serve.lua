-- `kmsrun serve kms-sim`: kmsrun's KMS protocol EMULATOR as a process. It reads the same
-- kms.toml as dstack-kms; the other flags are emulator-only. Prints "listening on URL" on
-- stdout (flushed) each time a listener is up: http:// in onboard mode, https:// in runtime
-- mode. Runs until SIGTERM/SIGINT; exits 1 when the emulated KMS would exit (e.g. /finish
-- before keys exist: "Failed to onboard").
local core = require "kmsrun.core"
local sim = require "kmsrun.emu.kms.emulator"
local argv = require "kmsrun.lib.argv"

local USAGE = [[usage: kmsrun serve kms-sim -c kms.toml [emulator options]
kms-sim is kmsrun's EMULATOR of the dstack KMS protocol (not the KMS; attestation is emulated).
  -c, --config FILE        kms.toml (same settings as dstack-kms; /etc/kms/kms.{toml,json} and
                           ./kms.{toml,json} are read first if present, as dstack-kms does)
  --image NAME             OS image name the emulated instance reports (default dstack-0.5.7)
  --compose-file FILE      bytes measured as the app compose (default: the kms.toml bytes)
  --salt HEX               per-deployment salt (default: kept in cert_dir, random the first time)
  --device HEX             emulated platform device id / PPID (default: a fixed emulated device)
  --no-attestation         behave as a KMS without guest agent (also: DSTACK_AGENT_ADDRESS=unix:<missing>)
  --tcb-status STATUS      TCB status the attestation reports (default UpToDate)
  --advisory ID            an advisory id the attestation reports; repeatable
  --old-format-cert        the RPC certificate's attestation carries no vm_config, as an older KMS's
                           does (a receiver then fills the empty osImageHash with its own)
  --host-alias FROM=TO     rewrite host FROM to TO in outgoing URLs (webhook, source_url); repeatable
  --name NAME              instance name in log lines
GUEST-AGENT FAILURE MODES (what a real dstack-kms would see from its simulator):
  --identity-from FILE     derive the identity from FILE's bytes alone (same FILE, same mr_aggregated)
  --vm-config JSON         the vm_config the quote attests
  --reported-vm-config JSON  the vm_config the guest agent's Info reports (split vm_config)
  --unverifiable-quote WHY the KMS cannot verify its own quote (no matching trust anchors)
TEST ONLY:
  --mutation NAME          re-create an authorization bug (env KMSRUN_SIM_MUTATION); repeatable:
                           the kms switches of emu/mutations.lua (docs/emulator.md)
  --fault SPEC             listen-delay=S, slow=METHOD:S, crash=METHOD, status500=METHOD,
                           badjson=METHOD; repeatable
  --leak-keys-to FILE      append every private key handed out in an RPC response to FILE
]]

local function value(key, meta) return { key, value = meta } end
local function list(key, meta) return { key, value = meta, list = true } end
local FLAGS = {
  ["--config"] = value("config", "FILE"), ["-c"] = "--config", ["--image"] = value("image", "NAME"),
  ["--compose-file"] = value("compose_file", "FILE"), ["--salt"] = value("salt", "HEX"),
  ["--device"] = value("device", "HEX"), ["--name"] = value("name", "NAME"),
  ["--leak-keys-to"] = value("leak_keys_to", "FILE"), ["--tcb-status"] = value("tcb_status", "STATUS"),
  ["--identity-from"] = value("identity_from", "FILE"), ["--vm-config"] = value("vm_config", "JSON"),
  ["--reported-vm-config"] = value("reported_vm_config", "JSON"),
  ["--unverifiable-quote"] = value("unverifiable_quote", "WHY"),
  ["--mutation"] = list("mutations", "NAME"), ["--fault"] = list("faults", "SPEC"),
  ["--host-alias"] = list("host_alias", "FROM=TO"), ["--advisory"] = list("advisories", "ID"),
  ["--no-attestation"] = { "no_attestation" }, ["--old-format-cert"] = { "old_format_cert" },
  ["--help"] = { "help" }, ["-h"] = "--help",
}

return function(args)
  local o, err = argv.parse(args, FLAGS)
  if not o then io.stderr:write("kmsrun serve kms-sim: ", err, "\n", USAGE); return 2 end
  if o.help then io.stdout:write(USAGE); return 0 end
  local opts = {
    image = o.image, salt = o.salt, device = o.device, name = o.name, no_attestation = o.no_attestation,
    faults = o.faults, host_alias = o.host_alias, leak_keys_to = o.leak_keys_to,
    mutations = #o.mutations > 0 and o.mutations or nil,
    tcb_status = o.tcb_status, advisories = o.advisories, old_format_cert = o.old_format_cert,
    vm_config = o.vm_config, reported_vm_config = o.reported_vm_config, unverifiable_quote = o.unverifiable_quote,
  }
  if o.identity_from then
    local f = io.open(o.identity_from, "rb")
    if not f then io.stderr:write("kmsrun serve kms-sim: cannot read ", o.identity_from, "\n"); return 2 end
    local inputs = require("kmsrun.emu.kms.guest_modes").identity_inputs(f:read("a"))
    f:close()
    opts.compose, opts.salt = inputs.compose, inputs.salt -- from the bytes alone, whatever --salt says
  end
  local layers, notes = require("kmsrun.emu.kms.config_files").layers(o.config)
  if not layers then io.stderr:write("Error: ", notes, "\n"); return 1 end
  if not o.config and #layers == 0 then io.stderr:write("kmsrun serve kms-sim: -c kms.toml is required\n", USAGE); return 2 end
  for _, line in ipairs(notes) do io.stderr:write("INFO ", line, "\n") end
  opts.config = layers
  if o.compose_file then
    local cf = io.open(o.compose_file, "rb")
    if not cf then io.stderr:write("kmsrun serve kms-sim: cannot read ", o.compose_file, "\n"); return 2 end
    opts.compose = cf:read("a")
    cf:close()
  end
  opts.on_listen = function(_, url)
    io.stdout:write("listening on ", url, "\n")
    io.stdout:flush()
  end

  local me = coroutine.running()
  opts.on_exit = function() core.wake(me) end
  local h, serr = sim.start(opts)
  if not h then
    io.stderr:write("Error: ", tostring(serr), "\n")
    return 1
  end
  require("kmsrun.lib.task").wait_for_signal("kms-sim: until SIGTERM or SIGINT", function() return h.mode == "exited" end)
  if h.mode == "exited" then
    io.stderr:write("Error: ", tostring(h.exit_error), "\n")
    return h.exit_code or 1
  end
  h:close()
  return 0
end
