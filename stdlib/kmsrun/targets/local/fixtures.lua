-- The simulator's fixture files (sdk/simulator: dstack.toml, sys-config.json,
-- attestation.bin, app-compose.json, appkeys.json), read and adjusted for one KMS.
--
-- Two OS image hashes live in the stock files: sys-config.json's vm_config, which the
-- guest agent's Info reports and GetAttestationInfo decodes with
-- (dstack/kms/src/onboard_service.rs:190-212), and the one in the sys-config JSON
-- embedded in attestation.bin, which the self-check and the receiver check decode
-- with (they pass "" as vm_config: main_service/upgrade_authority.rs:52-63, 221;
-- the fallback to the embedded config is dstack-attest/src/attestation.rs:410-426).
-- The attested one is what a KMS is judged by, so it is the one both must report.
local json = require "kmsrun.lib.json"
local toml = require "kmsrun.lib.toml"

local M = {}

-- Reads the JSON string literal starting right after the opening quote at i.
local function string_literal(text, i)
  local j = i
  while j <= #text do
    local c = text:sub(j, j)
    if c == "\\" then j = j + 2
    elseif c == '"' then return json.decode('"' .. text:sub(i, j - 1) .. '"')
    else j = j + 1 end
  end
  return nil
end

--- The vm_config JSON attested by an attestation.bin (the `vm_config` of the sys-config
-- JSON it embeds), or nil when the file carries none. The embedded config is plain
-- UTF-8 inside the SCALE encoding, so it is found by its key.
function M.attested_vm_config(bytes)
  local at = bytes and bytes:find('"vm_config":"', 1, true)
  if not at then return nil end
  return string_literal(bytes, at + #'"vm_config":"')
end

--- The os_image_hash of a vm_config JSON string (lowercase hex), or nil.
function M.os_image_hash(vm_config)
  local t = type(vm_config) == "string" and json.decode(vm_config)
  local h = type(t) == "table" and t.os_image_hash
  return type(h) == "string" and h:lower() or nil
end

--- sys-config.json text with its vm_config replaced; or nil, err.
function M.with_vm_config(sys_config_text, vm_config)
  local t = json.decode(sys_config_text or "")
  if type(t) ~= "table" then return nil, "sys-config.json is not a JSON object" end
  t.vm_config = vm_config
  return json.encode(t, { pretty = true }) .. "\n"
end

--- dstack.toml text with [default.core.simulator].mock_attestation_seed set (the
-- simulator reads it there: guest-agent-simulator/src/main.rs:36-43, 123-127 with
-- figment.focus("core") over the [default] profile). Other keys are kept.
function M.with_seed(dstack_toml_text, seed)
  local t, err = toml.parse(dstack_toml_text or "")
  if not t then return nil, "dstack.toml: " .. tostring(err) end
  t.default = t.default or {}
  t.default.core = t.default.core or {}
  t.default.core.simulator = t.default.core.simulator or {}
  local sim = t.default.core.simulator
  sim.attestation_file = sim.attestation_file or "attestation.bin"
  sim.mock_attestation_seed = seed
  -- The simulator listens where [internal] says, relative to its working directory.
  t.internal = t.internal or { address = "unix:./dstack.sock", reuse = true }
  return toml.encode(t)
end

--- The internal (guest agent) socket a dstack.toml names, relative to the simulator's
-- working directory: "dstack.sock" for the stock files.
function M.socket_name(dstack_toml_text)
  local t = toml.parse(dstack_toml_text or "")
  local addr = type(t) == "table" and type(t.internal) == "table" and t.internal.address
  local path = type(addr) == "string" and addr:match("^unix:(.+)$")
  if not path then return "dstack.sock" end
  return (path:gsub("^%./", ""))
end

return M
