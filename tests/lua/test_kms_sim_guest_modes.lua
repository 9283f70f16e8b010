-- The emulator's guest-agent failure modes (emu/kms/guest_modes.lua) and its kms.toml
-- checks that follow the real KMS (emu/kms/config_attestation.lua, config_files.lua):
-- each reproduces what a real dstack-kms does against the dstack simulator, with the
-- error text of upstream's contexts.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "lib/?.lua;" .. package.path

local T = require "kmsrun.lib.testing"
local F = require "kms_sim_fixture"
local fs = require "kmsrun.fs"
local cjson = require "cjson.safe"
local config = require "kmsrun.emu.kms.config"
local config_files = require "kmsrun.emu.kms.config_files"
local guest_modes = require "kmsrun.emu.kms.guest_modes"

local VM_A = '{"os_image_hash":"' .. string.rep("aa", 32) .. '","cpu_count":1,"memory_size":1}'
local VM_B = '{"os_image_hash":"' .. string.rep("bb", 32) .. '","cpu_count":1,"memory_size":1}'

local function att_core(a) return { attestation = a } end

-- [core.attestation] ------------------------------------------------------------------

T.test("[core.attestation]: an unknown key stops the emulator at startup (deny_unknown_fields)", function()
  local a = F.auth()
  local h, err = F.kms { webhook = a.url, core = att_core { root_cas = {} } }
  T.eq(h, nil)
  T.contains(err, "unknown field `root_cas`, expected one of `insecure_allow_external_trust_anchors`, `urls`, `root_ca`")
  h, err = F.kms { webhook = a.url, core = att_core { root_ca = { sgx = "/x" }, insecure_allow_external_trust_anchors = true } }
  T.eq(h, nil)
  T.contains(err, "unknown field `sgx`")
  h, err = F.kms { webhook = a.url, core = att_core { urls = { pcs = "http://x" } } }
  T.eq(h, nil)
  T.contains(err, "unknown field `pcs`, expected one of `pccs`, `amd_kds`")
  a:close()
end)

T.test("root_ca without insecure_allow_external_trust_anchors: the KMS refuses to start", function()
  local a = F.auth()
  local root = F.tmpdir() .. "/tdx-root-ca.pem"
  assert(fs.write(root, "root"))
  local h, err = F.kms { webhook = a.url, core = att_core { root_ca = { tdx = root } } }
  T.eq(h, nil)
  T.eq(err, "failed to load attestation verifier: external attestation trust anchors are configured but "
    .. "insecure_allow_external_trust_anchors is false")
  h, err = F.kms { webhook = a.url, core = att_core { insecure_allow_external_trust_anchors = true,
    root_ca = { tdx = root .. ".missing" } } }
  T.eq(h, nil)
  T.contains(err, "failed to load attestation verifier: failed to read TDX root CA from " .. root .. ".missing")
  h = assert(F.kms { webhook = a.url, core = att_core { insecure_allow_external_trust_anchors = true,
    urls = { pccs = "http://127.0.0.1:1" }, root_ca = { tdx = root } } })
  T.eq(h.mode, "onboard", "with the flag and a readable root it starts")
  h:close()
  a:close()
end)

T.test("kms.toml layers in upstream's order: /etc/kms/kms.toml, kms.json, ./kms.toml, ./kms.json, -c", function()
  local etc = F.tmpdir()
  assert(fs.write(etc .. "/kms.toml", '[core]\nsite_name = "from-etc-toml"\ncert_dir = "/etc-certs"\n'))
  assert(fs.write(etc .. "/kms.json", '{"core":{"site_name":"from-etc-json"}}'))
  local leaf = F.tmpdir() .. "/leaf.toml"
  assert(fs.write(leaf, '[core.onboard]\nport = 0\n'))
  local layers, notes = config_files.layers(leaf, etc)
  T.eq(#layers, 3, "etc toml, etc json, leaf (no ./kms.* here)")
  T.eq(notes[1], "Loading config file: " .. etc .. "/kms.toml")
  T.eq(notes[2], "Loading config file: " .. etc .. "/kms.json")
  local cfg = assert(config.load(layers))
  T.eq(cfg.core.site_name, "from-etc-json", "kms.json after kms.toml")
  T.eq(cfg.core.cert_dir, "/etc-certs", "a key the -c file does not set comes from /etc/kms")
  assert(fs.write(leaf, '[core]\nsite_name = "from-leaf"\n'))
  cfg = assert(config.load((config_files.layers(leaf, etc))))
  T.eq(cfg.core.site_name, "from-leaf", "the -c file wins")
  T.eq(#(select(1, config_files.layers(leaf, etc .. "/none"))), 1, "no /etc/kms: only the -c file")
end)

-- Guest-agent failure modes -----------------------------------------------------------

T.test("unverifiable quote: GetAttestationInfo and Bootstrap fail on the KMS's own quote", function()
  local a = F.auth { kms = {} }
  local h = assert(F.kms { webhook = a.url, unverifiable_quote = "no trust anchors" })
  local err = F.rpc_error(h, "Onboard.GetAttestationInfo")
  T.contains(err, "Failed to verify attestation: quote verification failed (kms-sim emulator: unverifiable quote: no trust anchors)")
  err = F.rpc_error(h, "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  T.contains(err, "KMS is not allowed to bootstrap: failed to build local KMS boot info: "
    .. "Failed to verify local KMS attestation: quote verification failed")
  h:close()
  a:close()
end)

T.test("split vm_config: GetAttestationInfo reports one OS image, the self-check uses the attested one", function()
  local a = F.auth { kms = {} }
  local h = assert(F.kms { webhook = a.url, vm_config = VM_A, reported_vm_config = VM_B })
  local info = F.rpc(h, "Onboard.GetAttestationInfo").json
  T.eq(info.os_image_hash, string.rep("bb", 32), "Info's vm_config")
  T.eq(h.identity.os_image_hash, string.rep("aa", 32), "the attested one")
  -- A policy built from GetAttestationInfo, as allow(src) is.
  a:set_policy { osImages = { "0x" .. info.os_image_hash }, gatewayAppId = "any",
    kms = { mrAggregated = { "0x" .. info.mr_aggregated }, devices = {}, allowAnyDevice = true }, apps = {} }
  local err = F.rpc_error(h, "Onboard.Bootstrap", '{"domain":"kms.example.test"}')
  T.contains(err, "KMS is not allowed to bootstrap: boot denied: OS image is not allowed")
  h:close()
  a:close()
end)

T.test("a malformed vm_config from the guest agent: the 'decode app info: ' wrap", function()
  local a = F.auth { kms = {} }
  local h = assert(F.kms { webhook = a.url, reported_vm_config = "{not json" })
  local err = F.rpc_error(h, "Onboard.GetAttestationInfo")
  T.contains(err, "Failed to decode app info: decode app info: Failed to decode os image hash: Failed to parse vm config: ")
  h:close()
  a:close()
end)

T.test("identity from the guest agent's bytes: same bytes, same mr_aggregated; other bytes, another", function()
  local a = F.auth()
  local one = guest_modes.identity_inputs("attestation fixture A")
  local h1 = assert(F.kms { webhook = a.url, compose = one.compose, salt = one.salt })
  local h2 = assert(F.kms { webhook = a.url, compose = one.compose, salt = one.salt })
  local other = guest_modes.identity_inputs("attestation fixture B")
  local h3 = assert(F.kms { webhook = a.url, compose = other.compose, salt = other.salt })
  T.eq(h1.identity.mr_aggregated, h2.identity.mr_aggregated)
  T.ok(h1.identity.mr_aggregated ~= h3.identity.mr_aggregated)
  local info = F.rpc(h2, "Onboard.GetAttestationInfo").json
  T.eq(info.mr_aggregated, h1.identity.mr_aggregated, "what GetAttestationInfo reports")
  h1:close(); h2:close(); h3:close()
  a:close()
end)

T.test("a --vm-config that is not JSON is a startup error", function()
  local a = F.auth()
  local h, err = F.kms { webhook = a.url, vm_config = "nope" }
  T.eq(h, nil)
  T.contains(err, "--vm-config is not a JSON object")
  a:close()
end)

T.test("cleanup", function() F.cleanup() end)
