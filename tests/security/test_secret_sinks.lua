-- The secret scan (issue 12, point 1): each encoding form of each kind of secret
-- (a secret variable holding a PEM key, a secret token variable, a key an RPC
-- returned) pushed into every sink a runbook reaches is absent from every byte
-- kmsrun wrote: the output directory, the archive's entries, the events stream
-- and the captured stdout and stderr. And the leak scan (exit 6) finds each form
-- that gets past the scrubber.
-- The forms are computed here, independently of report/redact_forms.lua.
local T = require "kmsrun.lib.testing"
local crypto = require "kmsrun.crypto"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local server = require "kmsrun.lib.http_server"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")
here = kit.here

local function b64url(raw) return (crypto.base64(raw):gsub("+", "-"):gsub("/", "_"):gsub("=+$", "")) end

local function key_forms(prefix, pem)
  local body = pem:match("%-%-%-%-%-\n(.-)\n%-%-%-%-%-END")
  local joined = body:gsub("\n", "")
  local der = assert(crypto.unbase64(joined))
  local scalar = assert(crypto.key_info(pem).private_raw)
  local forms = {
    [prefix .. " PEM"] = pem,
    [prefix .. " single-line PEM"] = (pem:gsub("\n", "")),
    [prefix .. " CRLF PEM"] = (pem:gsub("\n", "\r\n")),
    [prefix .. " DER base64"] = joined,
    [prefix .. " DER base64url"] = b64url(der),
    [prefix .. " DER hex"] = crypto.hex(der),
    [prefix .. " DER HEX"] = crypto.hex(der):upper(),
    [prefix .. " scalar hex"] = crypto.hex(scalar),
    [prefix .. " scalar HEX"] = crypto.hex(scalar):upper(),
    [prefix .. " scalar base64"] = crypto.base64(scalar),
    [prefix .. " scalar base64url"] = b64url(scalar),
  }
  local i = 0
  for line in body:gmatch("[^\n]+") do
    i = i + 1
    if #line >= 16 then forms[prefix .. " body line " .. i] = line end
  end
  return forms
end

local function token_forms(token)
  return {
    ["token raw"] = token, ["token upper"] = token:upper(), ["token base64"] = crypto.base64(token),
    ["token base64url"] = b64url(token), ["token hex"] = crypto.hex(token), ["token HEX"] = crypto.hex(token):upper(),
  }
end

local function values(t)
  local list = {}
  for _, v in pairs(t) do list[#list + 1] = v end
  table.sort(list)
  return list
end

T.test("every form of every kind of secret is absent from every sink, stdout and stderr included", function()
  local dir = kit.tmpdir()
  local var_key, rpc_key = crypto.keygen(), crypto.keygen("secp256k1")
  local token = "tok-" .. crypto.hex(crypto.random(12)) .. "-Zq"
  local vk, tk, rk = key_forms("var key", var_key), token_forms(token), key_forms("rpc key", rpc_key)
  local srv <close> = assert(server.listen(function()
    return 200, json.encode({ temp_ca_key = rpc_key, forms = json.array(values(rk)), device_id = "d" }),
      { ["Content-Type"] = "application/json" }
  end, { port = 0 }))
  local forms = {}
  for _, v in ipairs(values(vk)) do forms[#forms + 1] = v end
  for _, v in ipairs(values(tk)) do forms[#forms + 1] = v end
  local r = kit.kmsrun(dir, { here .. "/leak_runbook.lua", "--out", dir .. "/out", "--events", dir .. "/events.ndjson",
    "--keep-going", "--var", "key=" .. var_key, "--var", "token=" .. token, "--var", "forms=" .. table.concat(forms, "|"),
    "--var", "kms_url=" .. srv:url() })
  T.eq(r.code, 2, "a runtime error in a case: exit 2\n" .. r.stderr .. r.stdout)
  local texts = kit.contents(dir .. "/out")
  texts["events.ndjson"] = fs.read(dir .. "/events.ndjson") or ""
  texts.stdout, texts.stderr = r.stdout, r.stderr
  T.ok(texts["report.json"] and texts["junit.xml"] and texts["transcript.ndjson"], "the run wrote its report\n" .. r.stderr)
  -- texts["junit.xml"] and texts["transcript.ndjson"], "the run wrote its report")
  T.ok(texts["evidence.tar.gz!" .. "out/report.json"] or next(texts), "archive read")
  local report = json.decode(texts["report.json"])
  T.eq(report.exit_code, 2)
  T.eq(report.cases[1].status, "passed", "the secrets went through every sink")
  T.eq(report.cases[3].failure_kind, "error")
  local all = {}
  for _, list in pairs({ vk, tk, rk }) do for n, f in pairs(list) do all[n] = f end end
  T.eq(kit.find_any(texts, all), nil, "no form in any sink")
  -- The sinks did receive the secrets (as markers): the test pushes them somewhere.
  for _, sink in ipairs({ "stdout", "report.json", "junit.xml", "events.ndjson", "transcript.ndjson" }) do
    T.contains(texts[sink], "[REDACTED sha256:", sink .. " holds markers")
  end
  T.contains(r.stdout, "boom [REDACTED sha256:", "the error reached the terminal, scrubbed")
  -- Structure survives: every JSON file and line parses.
  for name, text in pairs(texts) do
    if name:match("%.json$") then T.ok(json.decode(text), name .. " parses") end
    if name:match("%.ndjson$") then
      for line in text:gmatch("[^\n]+") do T.ok(json.decode(line), name .. " line parses: " .. line:sub(1, 80)) end
    end
  end
  fs.remove(dir)
end)

T.test("the leak scan finds each form in a JSON file, a JSON-lines file, a text file and the archive", function()
  local redact = require "kmsrun.report.redact"
  local evidence = require "kmsrun.report.evidence"
  local key, token = crypto.keygen(), "tok-" .. crypto.hex(crypto.random(12))
  redact.add(key)
  redact.add(token)
  local all = key_forms("key", key)
  for n, f in pairs(token_forms(token)) do all[n] = f end
  local dir = kit.tmpdir()
  for name, form in pairs(all) do
    for _, file in ipairs({ "a.json", "b.ndjson", "c.txt" }) do
      fs.remove(dir .. "/ev")
      local ev = assert(evidence.open(dir .. "/ev"))
      local text = file == "c.txt" and ("x " .. form .. " y") or json.encode({ v = "x " .. form .. " y" })
      assert(fs.write(dir .. "/ev/" .. file, text))
      T.ok(ev:leak_scan(), name .. " in " .. file)
    end
  end
  -- Inside the archive only.
  fs.remove(dir .. "/ev")
  local ev = assert(evidence.open(dir .. "/ev"))
  assert(fs.write(dir .. "/ev/k.txt", all["key scalar HEX"]))
  assert(ev:archive("ev"))
  fs.remove(dir .. "/ev/k.txt")
  fs.remove(dir .. "/ev/MANIFEST.sha256")
  T.match(ev:leak_scan() or "", "^evidence%.tar%.gz!", "found in the archive")
  fs.remove(dir)
end)

T.test("a secret that is JSON syntax is no leak in the syntax and corrupts no file", function()
  local redact = require "kmsrun.report.redact"
  local evidence = require "kmsrun.report.evidence"
  redact.add('"status"')
  redact.add('": "')
  local dir = kit.tmpdir()
  local ev = assert(evidence.open(dir .. "/ev"))
  assert(ev:json("report.json", { status = "passed", note = 'said "status" then ": "' }))
  assert(ev:append_json("t.ndjson", { status = "x", v = '"status"' }))
  local report = json.decode(fs.read(dir .. "/ev/report.json"))
  T.eq(report.status, "passed")
  T.eq(report.note, "said " .. redact.marker('"status"') .. " then " .. redact.marker('": "'))
  T.eq(json.decode(fs.read(dir .. "/ev/t.ndjson")).v, redact.marker('"status"'))
  T.eq(ev:leak_scan(), nil, "the JSON syntax itself is not a leak")
  fs.remove(dir)
end)
