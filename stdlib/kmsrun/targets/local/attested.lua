-- Attested callers on the local target: what a dstack app does to reach the KMS
-- (dstack-util's request_app_keys_from_kms_url, dstack/dstack-util/src/system_setup.rs:2116-2150):
-- a fresh P-256 key, an attestation over it from the guest agent — here the run's dstack
-- simulator, `Attest` on its socket as the SDK calls it (sdk/python/src/dstack_sdk/
-- dstack_client.py:425-440) — and a certificate signed by the called KMS's temp CA with
-- the attestation under PHALA_RATLS_ATTESTATION (dstack/ra-tls/src/cert.rs:392-395,
-- 541-575). Every caller has the simulator's one fixture identity: app(...) options do
-- not apply. Not yet confirmed against a real simulator (docs/targets/local.md).
local crypto = require "kmsrun.crypto"
local http = require "kmsrun.http"
local cjson = require "cjson.safe"
local csr = require "kmsrun.kms.csr"

local M = {}

M.OID_ATTESTATION = "1.3.6.1.4.1.62397.1.8"

--- RA-TLS report data (QuoteContentType::RaTlsCert, dstack/dstack-attest/src/attestation.rs:520-560).
function M.report_data(spki_der) return crypto.sha512("ratls-cert:" .. spki_der) end

-- One call of the simulator's prpc service over its Unix socket; returns the JSON answer.
local function call(socket, method, body)
  local res, err = http.request("http://localhost/" .. method, {
    method = "POST", unix_socket = socket, body = cjson.encode(body),
    headers = { ["Content-Type"] = "application/json" }, timeout = 30,
  })
  if not res then return nil, "the simulator's " .. method .. " failed: " .. tostring(err) end
  local v = cjson.decode(res.body)
  if res.status ~= 200 or type(v) ~= "table" then
    return nil, string.format("the simulator's %s answered HTTP %d: %s", method, res.status, res.body:sub(1, 300))
  end
  return v
end

local Attester = {}
Attester.__index = Attester

function Attester:attest_key(spki)
  local v, err = call(self.socket, "Attest", { report_data = crypto.hex(M.report_data(spki)) })
  if not v then return nil, err end
  local bytes = type(v.attestation) == "string" and crypto.unhex(v.attestation)
  if not bytes then return nil, "the simulator's Attest answer has no attestation" end
  return bytes
end

function Attester:client_cert(ca_cert, ca_key)
  local key = crypto.keygen("P-256")
  local att, err = self:attest_key(crypto.key_info(key).public_der)
  if not att then return nil, err end
  local cert, cerr = crypto.cert {
    key = key, subject = { CN = "RA-TLS TEMP Cert" }, issuer_cert = ca_cert, issuer_key = ca_key,
    extensions = { { oid = M.OID_ATTESTATION, value = att } },
  }
  if not cert then return nil, tostring(cerr) end
  return { cert = cert, key = key }
end

-- Upstream's CSR carries a SCALE VersionedAttestation; the simulator's Attest bytes are
-- that encoding, so they go in as they are (unconfirmed, see the module comment).
function Attester:cert_request(config, version, confirm)
  local key = crypto.keygen("P-256")
  local spki = crypto.key_info(key).public_der
  local att, err = self:attest_key(spki)
  if not att then return nil, err end
  local t = { confirm = confirm, pubkey = spki, config = config }
  local encoded
  if (version or 2) == 2 then
    -- V2's attestation is the versioned encoding itself, not a length-prefixed vector.
    encoded = csr.encode(t, 2):sub(1, -2) .. att
  else
    t.attestation = att
    encoded = csr.encode(t, 1)
  end
  return { api_version = version or 2, csr = encoded, signature = csr.sign(key, encoded), vm_config = self.vm_config }, key
end

--- The attester for the run's simulator; sim_state() starts or returns it.
function M.attester(ctx, of, sim_state)
  if of.__kind == "kms" and of.spec.attestation == false then
    return nil, of.name .. " has no attestation source (attestation = false)"
  end
  local sim, err = sim_state()
  if not sim then return nil, err end
  local info, ierr = call(sim.socket, "Info", {})
  if not info then return nil, ierr end
  local a = setmetatable({ socket = sim.socket, vm_config = info.vm_config or "" }, Attester)
  -- The simulator's Info (AppInfo, dstack/guest-agent/rpc/proto/agent_rpc.proto:216-243).
  local tcb = type(info.tcb_info) == "string" and cjson.decode(info.tcb_info) or {}
  a.summary = {
    app_id = info.app_id, instance_id = info.instance_id, device_id = info.device_id,
    compose_hash = info.compose_hash or (type(tcb) == "table" and tcb.compose_hash) or nil,
    os_image_hash = info.os_image_hash, mr_aggregated = info.mr_aggregated, tcb_status = nil,
  }
  return a
end

return M
