local T = require "kmsrun.lib.testing"
local redact = require "kmsrun.report.redact"

T.test("a 4-byte secret (a short VMM password) is scrubbed in every form", function()
  redact.add("pw12")
  local crypto = require "kmsrun.crypto"
  local text = "auth pw12 hex " .. crypto.hex("pw12") .. " b64 " .. crypto.base64("pw12")
  local clean = redact.scrub(text)
  T.eq(clean:find("pw12", 1, true), nil)
  T.eq(clean:find(crypto.hex("pw12"), 1, true), nil)
  T.eq(clean:find(crypto.base64("pw12"), 1, true), nil)
  T.contains(clean, "[REDACTED sha256:")
  T.ok(redact.find_leak(text), "the leak scan finds it in clear text")
end)

T.test("values below the minimum are not tainted (secret() refuses them instead)", function()
  redact.add("ab")
  T.eq(redact.scrub("about abc"), "about abc")
end)
