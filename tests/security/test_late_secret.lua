-- A secret marked after it was written (issue 12, point 1): the attestation file
-- written before secret(), the auth server's decision log (written by the auth
-- emulator, not through the scrubber) and the transcript hold it in clear until
-- the run ends; at the end every file is scrubbed again, the archive holds no
-- clear copy, and the run passes (without that: exit 6, the leak scan's net).
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

T.test("a value marked secret late is scrubbed from every file and the archive", function()
  local dir = kit.tmpdir()
  local r = kit.kmsrun(dir, { kit.here .. "/late_secret.lua", "--out", dir .. "/out" })
  T.eq(r.code, 0, r.stderr .. r.stdout)
  local att = json.decode(fs.read(dir .. "/out/attestation/kms-a.json"))
  T.match(att.device_id, "^%[REDACTED sha256:", "the attestation file was scrubbed")
  local texts = kit.contents(dir .. "/out")
  T.contains(texts["logs/auth-a.decisions.ndjson"], '"deviceId":"[REDACTED sha256:')
  for line in texts["logs/auth-a.decisions.ndjson"]:gmatch("[^\n]+") do T.ok(json.decode(line), line) end
  -- The clear value is nowhere: find it by the marker's digest.
  local marker = att.device_id
  local crypto = require "kmsrun.crypto"
  for name, text in pairs(texts) do
    for hex in text:gmatch("%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x") do
      T.ok("[REDACTED sha256:" .. crypto.hex(crypto.sha256(hex)) .. "]" ~= marker, "the device id in clear in " .. name)
    end
  end
  fs.remove(dir)
end)
