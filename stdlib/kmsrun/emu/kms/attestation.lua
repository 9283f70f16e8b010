-- Emulated attestation: kmsrun's OWN format, standing in for a TDX quote + event log.
-- It is a JSON document marked "kmsrun-emulated-attestation/v1" with a notice saying it is
-- not a TEE quote, carried in X.509 certificates under kmsrun's own OID (a 2.25 UUID arc),
-- never under dstack's RA-TLS OIDs. "Verification" checks only the document's internal
-- consistency (digest, recomputed measurements) and the report-data binding: anyone can
-- forge one. See docs/emulator.md.
local crypto = require "kmsrun.crypto"
local cjson = require "cjson.safe"
local S = require "kmsrun.lib.json_serde"
local hex = require "kmsrun.lib.hex"
local identity = require "kmsrun.emu.kms.identity"
local messages = require "kmsrun.kms.messages"

local A = {}

--- The certificate extension OID: 2.25.<UUID 71b26159-f415-4976-9b15-1e983bd43076 as an integer>.
A.OID = "2.25.151128966885092787696829820719986913398"
A.FORMAT = "kmsrun-emulated-attestation/v1"
A.NOTICE = "emulated by kmsrun, not a TEE quote"
-- dstack's special-usage extension (8.1); the emulator sets it as the real KMS does.
A.OID_SPECIAL_USAGE = "1.3.6.1.4.1.62397.1.4"

A.NO_AGENT = "client error (Connect): No such file or directory (os error 2)"

--- Report data binding an RA-TLS certificate key (8.2).
function A.ratls_report_data(spki_der)
  return crypto.sha512("ratls-cert:" .. spki_der)
end

--- Report data of the bootstrap attestation (9.3), with SHA-256 standing in for keccak256.
function A.bootstrap_report_data(ca_pubkey, k256_pubkey)
  return crypto.sha256("dstack-kms-genereted-keys-v1:" .. hex.encode(ca_pubkey) .. ";" .. hex.encode(k256_pubkey) .. ";")
    .. string.rep("\0", 32)
end

--- The attestation document of identity id over 64 bytes of report data.
function A.build(id, report_data)
  assert(#report_data == 64, "attestation.build: report data must be 64 bytes")
  local log = S.arr()
  for i, ev in ipairs(id.events) do log[i] = S.obj { { "event", ev[1] }, { "payload", hex.encode(ev[2]) } } end
  local s = identity.summary(id)
  local advisories = S.arr()
  for i, a in ipairs(id.advisory_ids or {}) do advisories[i] = a end
  local fields = {
    { "format", A.FORMAT },
    { "notice", A.NOTICE },
    { "tee_variant", id.tee_variant },
    { "report_data", hex.encode(report_data) },
    { "mrtd", hex.encode(id.regs.mrtd) }, { "rtmr0", hex.encode(id.regs.rtmr0) },
    { "rtmr1", hex.encode(id.regs.rtmr1) }, { "rtmr2", hex.encode(id.regs.rtmr2) },
    { "event_log", log },
    { "ppid", s.ppid },
    { "tcb_status", id.tcb_status },
    { "advisory_ids", advisories },
    { "vm_config", id.vm_config },
    { "identity", S.obj {
      { "os_image_hash", s.os_image_hash }, { "mr_aggregated", s.mr_aggregated }, { "mr_system", s.mr_system },
      { "app_id", s.app_id }, { "compose_hash", s.compose_hash }, { "instance_id", s.instance_id },
      { "device_id", s.device_id },
    } },
  }
  -- Only on an instance told its quotes do not verify (guest_modes.lua).
  if id.unverifiable then table.insert(fields, #fields, { "unverifiable", tostring(id.unverifiable) }) end
  local body = S.encode(S.obj(fields))
  -- The digest is the SHA-256 of the document without its digest member (body, ending in
  -- "}"), so any edit of the document is detected.
  return body:sub(1, -2) .. ',"digest":"' .. hex.encode(crypto.sha256(body)) .. '"}'
end

local function unhex(field, v, len)
  if type(v) ~= "string" then return nil, field .. " is missing" end
  local b = hex.decode(v)
  if not b or (len and #b ~= len) then return nil, field .. " is not " .. (len and (len .. " bytes of ") or "") .. "hex" end
  return b
end

--- Decodes a blob; returns the document or nil, error (the "decode" step).
function A.decode(blob)
  if blob == nil or blob == "" then return nil, "Empty attestation bytes" end
  local doc = cjson.decode(blob)
  if type(doc) ~= "table" or doc.format ~= A.FORMAT then
    return nil, "unsupported attestation format (kms-sim (emulator) only reads " .. A.FORMAT .. ")"
  end
  return doc
end

--- "Verifies" a decoded document: digest, field shapes, measurements recomputed from the
-- registers and the event log. Returns a verified record or nil, error.
function A.verify(blob)
  local doc, err = A.decode(blob)
  if not doc then return nil, err end
  local prefix, digest = blob:match('^(.*),"digest":"(%x+)"}$')
  if not prefix or hex.encode(crypto.sha256(prefix .. "}")) ~= digest then
    return nil, "emulated attestation digest mismatch"
  end
  if doc.unverifiable ~= nil then return nil, require("kmsrun.emu.kms.guest_modes").unverifiable_message(doc.unverifiable) end
  local v = { tee_variant = doc.tee_variant, tcb_status = doc.tcb_status, vm_config = doc.vm_config or "" }
  v.report_data, err = unhex("report_data", doc.report_data, 64); if err then return nil, err end
  v.regs = {}
  for _, r in ipairs { "mrtd", "rtmr0", "rtmr1", "rtmr2" } do
    v.regs[r], err = unhex(r, doc[r], 48); if err then return nil, err end
  end
  v.ppid, err = unhex("ppid", doc.ppid); if err then return nil, err end
  v.events = {}
  for i, ev in ipairs(type(doc.event_log) == "table" and doc.event_log or {}) do
    local p, perr = unhex("event_log payload", ev.payload)
    if not p or type(ev.event) ~= "string" then return nil, perr or "event_log entry without a name" end
    v.events[i] = { ev.event, p }
  end
  v.advisory_ids = {}
  for i, a in ipairs(type(doc.advisory_ids) == "table" and doc.advisory_ids or {}) do v.advisory_ids[i] = tostring(a) end
  local m = identity.measure(v.regs, v.events, false)
  if type(doc.identity) ~= "table" or doc.identity.mr_aggregated ~= hex.encode(m.mr_aggregated) then
    return nil, "emulated attestation measurements do not match its event log"
  end
  return v
end

--- Verifies a blob bound to a certificate key (8.2): report data first, then the document.
function A.verify_with_ra_pubkey(blob, spki_der)
  local doc, err = A.decode(blob)
  if not doc then return nil, err end
  if doc.report_data ~= hex.encode(A.ratls_report_data(spki_der)) then return nil, "report data mismatch" end
  return A.verify(blob)
end

-- The os_image_hash a vm_config gives (the caller's copy, else the attested one).
local function os_image_hash_of(vm_config_str, embedded)
  local cfg = vm_config_str ~= "" and vm_config_str or embedded
  if cfg == "" then cfg = "{}" end
  local outer = cjson.decode(cfg)
  if type(outer) == "table" and type(outer.vm_config) == "string" then cfg = outer.vm_config end
  local vm, err = S.decode(cfg, messages.VmConfig)
  if not vm then return nil, "Failed to decode os image hash: Failed to parse vm config: " .. err end
  return vm.os_image_hash
end

--- The policy boot info (6.2) of a verified attestation: full measurement, or the boot-time
-- one (SignCert). Returns a table of raw values or nil, error (with upstream's contexts).
function A.boot_info(v, boottime, vm_config_str)
  local osh, err = os_image_hash_of(vm_config_str or "", v.vm_config)
  if not osh then return nil, "decode app info: " .. err end
  local m = identity.measure(v.regs, v.events, boottime)
  if #m.app_id ~= 20 then return nil, "app_id must be 20 bytes" end
  return {
    tee_variant = v.tee_variant, mr_aggregated = m.mr_aggregated, os_image_hash = osh, mr_system = m.mr_system,
    app_id = m.app_id, compose_hash = m.compose_hash, instance_id = m.instance_id,
    device_id = crypto.sha256(v.ppid), key_provider_info = m.key_provider_info,
    tcb_status = v.tcb_status or "", advisory_ids = v.advisory_ids or {}, ppid = v.ppid,
  }
end

--- The webhook body (6.2): compact JSON, keys in the KMS's order, hex without 0x.
function A.boot_info_json(bi)
  local adv = S.arr()
  for i, a in ipairs(bi.advisory_ids) do adv[i] = a end
  return S.encode(S.obj {
    { "teeVariant", bi.tee_variant }, { "mrAggregated", hex.encode(bi.mr_aggregated) },
    { "osImageHash", hex.encode(bi.os_image_hash) }, { "mrSystem", hex.encode(bi.mr_system) },
    { "appId", hex.encode(bi.app_id) }, { "composeHash", hex.encode(bi.compose_hash) },
    { "instanceId", hex.encode(bi.instance_id) }, { "deviceId", hex.encode(bi.device_id) },
    { "keyProviderInfo", hex.encode(bi.key_provider_info) }, { "tcbStatus", bi.tcb_status },
    { "advisoryIds", adv },
  })
end

--- The attestation blob carried by a certificate (nil if it has none), and parse errors.
function A.from_cert(pem)
  local info, err = crypto.parse_cert(pem)
  if not info then return nil, nil, err end
  return info.extensions and info.extensions[A.OID], info
end

-- The emulated guest agent ---------------------------------------------------------

local Agent = {}
Agent.__index = Agent

--- An emulated guest agent for identity id. opts.unavailable: every call fails with the
-- transport error of a missing socket (11.3), like a KMS outside a CVM.
function A.agent(id, opts)
  opts = opts or {}
  return setmetatable({ id = id, unavailable = opts.unavailable, transport = opts.transport or A.NO_AGENT,
    reported_vm_config = opts.reported_vm_config }, Agent)
end

--- Attest: returns the blob for 64 bytes of report data, or nil, transport error.
-- without_vm_config: the attestation of an older KMS's certificate, which carried no vm_config
-- (its boot info then has an empty os_image_hash, kms-protocol.md 3.3 step e).
function Agent:attest(report_data, without_vm_config)
  if self.unavailable then return nil, self.transport end
  if without_vm_config then
    return A.build(setmetatable({ vm_config = "" }, { __index = self.id }), report_data)
  end
  return A.build(self.id, report_data)
end

--- Info: returns { vm_config = string } or nil, transport error. The reported vm_config
-- is the attested one unless told otherwise (guest_modes.lua: split vm_config).
function Agent:info()
  if self.unavailable then return nil, self.transport end
  return { vm_config = self.reported_vm_config or self.id.vm_config }
end

return A
