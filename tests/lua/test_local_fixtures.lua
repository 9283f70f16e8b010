-- targets/local/fixtures.lua: reading the vm_config an attestation.bin attests (its
-- embedded sys-config JSON inside the SCALE bytes), rewriting sys-config.json's, and
-- seeding dstack.toml, without losing the other settings.
local T = require "kmsrun.lib.testing"
local fixtures = require "kmsrun.targets.local.fixtures"
local toml = require "kmsrun.lib.toml"
local json = require "kmsrun.lib.json"

local H1 = string.rep("e6", 32)
local H2 = string.rep("64", 32)
-- The shape of upstream's sdk/simulator/attestation.bin around its config: binary
-- bytes, a SCALE length prefix, then the sys-config JSON with vm_config as a string.
local BIN = "\0\0IN\4\0\2\0\129\0\0\0" .. "\165\8"
  .. '{"kms_urls":["https://kms.example:12001"],"pccs_url":"","vm_config":"{\\"os_image_hash\\":\\"' .. H1
  .. '\\",\\"cpu_count\\":8,\\"image\\":\\"dstack-0.6.0\\"}"}' .. "\0\1\2"

T.test("the attested vm_config is read from the embedded sys-config JSON", function()
  local vm = fixtures.attested_vm_config(BIN)
  T.eq(vm, '{"os_image_hash":"' .. H1 .. '","cpu_count":8,"image":"dstack-0.6.0"}')
  T.eq(fixtures.os_image_hash(vm), H1)
  T.eq(fixtures.attested_vm_config("\0\1 no config here"), nil)
  T.eq(fixtures.attested_vm_config(nil), nil)
end)

T.test("sys-config.json's vm_config is replaced, the other keys kept", function()
  local sys = '{"kms_urls":[],"pccs_url":"","vm_config":"{\\"os_image_hash\\":\\"' .. H2 .. '\\"}"}'
  local out = assert(fixtures.with_vm_config(sys, fixtures.attested_vm_config(BIN)))
  local t = json.decode(out)
  T.eq(fixtures.os_image_hash(t.vm_config), H1)
  T.eq(t.pccs_url, "")
  T.eq(type(t.kms_urls), "table")
  local _, err = fixtures.with_vm_config("not json", "{}")
  T.contains(err, "not a JSON object")
end)

T.test("dstack.toml gets the seed under [default.core.simulator]; other keys stay", function()
  local stock = '[default]\nworkers = 8\n[default.core]\nkeys_file = "appkeys.json"\n'
    .. '[default.core.simulator]\nattestation_file = "attestation.bin"\npatch_report_data = true\n'
    .. '[internal]\naddress = "unix:./dstack.sock"\nreuse = true\n'
  local t = assert(toml.parse(assert(fixtures.with_seed(stock, string.rep("ab", 32)))))
  T.eq(t.default.core.simulator.mock_attestation_seed, string.rep("ab", 32))
  T.eq(t.default.core.simulator.patch_report_data, true)
  T.eq(t.default.core.keys_file, "appkeys.json")
  T.eq(t.default.workers, 8)
  -- No dstack.toml in the fixture directory: the simulator's built-in defaults plus ours.
  t = assert(toml.parse(assert(fixtures.with_seed("", "cd"))))
  T.eq(t.default.core.simulator.attestation_file, "attestation.bin")
  T.eq(t.internal.address, "unix:./dstack.sock")
  local _, err = fixtures.with_seed("[broken", "cd")
  T.contains(err, "dstack.toml: ")
end)

T.test("the guest-agent socket a dstack.toml names", function()
  T.eq(fixtures.socket_name('[internal]\naddress = "unix:./dstack.sock"\n'), "dstack.sock")
  T.eq(fixtures.socket_name('[internal]\naddress = "unix:./agent/guest.sock"\n'), "agent/guest.sock")
  T.eq(fixtures.socket_name(""), "dstack.sock")
end)
