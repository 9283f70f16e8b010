-- Attested callers on the local target (targets/local/attested.lua) against a fake
-- guest-agent socket (tests/fakes/guest-agent-attest.py): the caller's key is what gets
-- attested (RA-TLS report data), the attestation lands under PHALA_RATLS_ATTESTATION in a
-- certificate signed by the given temp CA, the identity comes from Info, and a V2 CSR
-- carries the attestation bytes as they are. Plumbing only: no real simulator here.
local T = require "kmsrun.lib.testing"
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local cjson = require "cjson.safe"
local csr = require "kmsrun.kms.csr"
local L = require "kmsrun.targets.local.attested"

local SRC = assert(os.getenv("KMSRUN_SOURCE_DIR"), "KMSRUN_SOURCE_DIR is not set")
local dir = assert(fs.tmpdir("local-attested"))
local sock, log = dir .. "/dstack.sock", dir .. "/requests.ndjson"
local fake

local function requests()
  local out = {}
  for line in (fs.read(log) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

T.test("start the fake guest agent", function()
  fake = assert(proc.spawn({ "python3", SRC .. "/tests/fakes/guest-agent-attest.py", sock, log }, { cwd = dir }))
  local deadline = time.now() + 10
  -- The socket file appears at bind(), a moment before listen(): wait for an answer.
  local http = require "kmsrun.http"
  while not (fs.exists(sock) and http.request("http://localhost/none", { method = "POST", unix_socket = sock, timeout = 2 })) do
    assert(time.now() < deadline and fake:running(), "the fake guest agent did not answer on its socket")
    time.sleep(0.02)
  end
end)

local function attester()
  return assert(L.attester({}, { __kind = "app", name = "wallet", spec = {} }, function() return { socket = sock } end))
end

T.test("client certificate: the caller's key attested, signed by the temp CA", function()
  local a = attester()
  T.eq(a.summary.app_id, string.rep("11", 20), "identity from Info")
  local ca_key = crypto.keygen()
  local ca = crypto.cert { key = ca_key, subject = { CN = "Dstack Client Temp CA" }, ca = true }
  local pair = assert(a:client_cert(ca, ca_key))
  T.ok(crypto.verify_chain(pair.cert, { roots = ca }))
  local info = crypto.parse_cert(pair.cert)
  T.eq(info.subject_fields.CN, "RA-TLS TEMP Cert")
  local spki = crypto.key_info(pair.key).public_der
  T.eq(info.public_key_der, spki)
  T.eq(info.extensions[L.OID_ATTESTATION], "fake-attestation:" .. L.report_data(spki))
  local reqs = requests()
  T.eq(reqs[#reqs].path, "/Attest")
  T.eq(cjson.decode(reqs[#reqs].body).report_data, crypto.hex(crypto.sha512("ratls-cert:" .. spki)))
end)

T.test("cert request: V2 carries the attestation bytes as they are, V1 as the quote", function()
  local a = attester()
  local body, key = a:cert_request({ subject = "wallet.example" }, 2)
  local spki = crypto.key_info(key).public_der
  local want = "fake-attestation:" .. L.report_data(spki)
  T.eq(body.csr:sub(-#want), want, "V2: the versioned attestation closes the CSR")
  T.ok(crypto.verify(key, body.csr, body.signature), "signed by the CSR key")
  local v1 = a:cert_request({ subject = "wallet.example" }, 1)
  local d = assert(csr.decode(v1.csr, 1))
  T.eq(d.attestation:sub(1, 17), "fake-attestation:")
  T.eq(v1.vm_config, '{"os_image_hash":"' .. string.rep("55", 32) .. '"}')
end)

T.test("a KMS declared without attestation has no attested caller", function()
  local a, err = L.attester({}, { __kind = "kms", name = "bare", spec = { attestation = false } }, function() error("not asked") end)
  T.eq(a, nil)
  T.match(err, "no attestation source")
end)

T.test("emulator knobs are refused by the real-KMS targets", function()
  local knobs = require "kmsrun.targets.knobs"
  T.eq(knobs.refuse({ name = "k", spec = { auth = {} } }, "local"), nil)
  T.match(knobs.refuse({ name = "k", spec = { device = "rack-2" } }, "local"), "option device is an emulator knob, not available on the local target")
  T.match(knobs.refuse({ name = "k", spec = { old_format_cert = true } }, "vmm"), "not available on the vmm target")
  -- Wired into both targets' deploy.
  for _, m in ipairs { "kmsrun.targets.local.target", "kmsrun.targets.vmm.target" } do
    local ok, err = require(m).deploy({}, { name = "k", spec = { tcb_status = "OutOfDate" } })
    T.eq(ok, nil); T.match(err, "tcb_status is an emulator knob")
  end
end)

T.test("cleanup", function()
  if fake then fake:kill(15); fake:wait() end
  fs.remove(dir)
end)
