-- Hostile and broken answers through the pieces a runbook's rpc uses: prpc.call
-- (decode), redact.response, json.encode. They must give clear results (a
-- response with ok=false and a reason, or a transport error with a code), never
-- raise, and keep the output valid UTF-8 JSON.
-- Run by tests/e2e/test_faults.sh: kmsrun test tests/faults/test_hostile.lua
local T = require "kmsrun.lib.testing"
local server = require "kmsrun.lib.http_server"
local http = require "kmsrun.http"
local prpc = require "kmsrun.kms.prpc"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local time = require "kmsrun.time"

local BODIES = {
  garbage = "\255\254\0garbage \192\128\1\2\3",
  truncated = '{"ca_pubkey": "ab',
  empty = "",
  number = "42",
  string = '"hello"',
  null = "null",
  array = '[1, "two", {"three": 3}]',
  deep_ok = string.rep("[", 900) .. string.rep("]", 900),
  deep_bad = string.rep("[", 5000) .. string.rep("]", 5000),
  order = '{"__order": 5, "x": {"__order": ["a"], "b": 1}}',
  metatable = '{"__index": {"a": 1}, "__jsontype": "array", "__tostring": 1, "__kind": "response"}',
  error_table = '{"error": {"nested": [1, 2]}}',
  error_number = '{"error": 42}',
  bad_utf8_in_string = '{"device_id": "\255\254 not utf-8"}',
  huge_number = '{"n": 1e400, "m": -1e400}',
  nan = '{"n": nan, "i": inf, "h": 0x10}',
  nul_in_key = '{"a\\u0000b": 1}',
}

local function hwm_kib()
  local status = require("kmsrun.fs").read("/proc/self/status") or ""
  return tonumber(status:match("VmHWM:%s*(%d+)"))
end

-- First, while the process is small: a 20 MiB answer (from another process) to a
-- request capped at 1 MiB fails with ETOOBIG without the body ever being held.
T.test("a 20 MiB answer under max_body = 1 MiB: ETOOBIG, memory bounded", function()
  local proc = require "kmsrun.proc"
  local fs = require "kmsrun.fs"
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local dir = assert(fs.tmpdir("kmsrun-hostile"))
  local p <close> = assert(proc.spawn({ proc.exe(), "script", here .. "/fault_server.lua", "huge" },
    { stdout = dir .. "/out" }))
  local base
  for _ = 1, 400 do
    base = (fs.read(dir .. "/out") or ""):match("listening on (%S+)")
    if base then break end
    time.sleep(0.05)
  end
  T.ok(base, "the fault server listens")
  local before = hwm_kib()
  for _ = 1, 3 do
    local res, err, code = http.request(base .. "/x", { max_body = 1024 * 1024, timeout = 30 })
    T.eq(res, nil)
    T.eq(code, "ETOOBIG", err)
  end
  local after = hwm_kib()
  fs.remove(dir)
  if before and after then
    T.ok(after - before < 12 * 1024, string.format("peak RSS grew by %d KiB (< 12 MiB) for 3 x 20 MiB answers", after - before))
  end
end)

local srv
local function url()
  if not srv then
    srv = assert(server.listen(function(req)
      local name = req.path:match("^/(%w[%w_]*)/")
      local body = BODIES[name]
      if name == "big" then body = string.rep("x", 2 * 1024 * 1024) end
      if name == "hang" then time.sleep(30) end
      return 200, body or "", { ["Content-Type"] = "application/json" }
    end, { port = 0 }))
  end
  return srv:url()
end

local function valid_json_text(s, what)
  T.ok(utf8.len(s), what .. ": valid UTF-8")
  T.ok(json.decode(s) ~= nil, what .. ": decodes back")
end

for name in pairs(BODIES) do
  T.test("hostile body '" .. name .. "': a response, no exception, valid JSON out", function()
    local res, err, code = prpc.call(url() .. "/" .. name, "Onboard.GetAttestationInfo", nil, { timeout = 10 })
    T.ok(res, "a response: " .. tostring(err) .. " " .. tostring(code))
    T.eq(res.status, 200)
    if json.decode(BODIES[name]) == nil then
      T.eq(res.ok, false, "a body that is not JSON is not ok")
      T.ok(res.json_error, "the reason is given")
      T.eq(res.body, BODIES[name], "the raw text is kept")
    end
    if res.error ~= nil then T.eq(type(res.error), "string", "error is a string or nil") end
    local red = redact.response(res.body)
    local text = json.encode({ response = red, error = res.error, raw = res.raw })
    valid_json_text(text, name)
    local pretty = json.encode({ response = red }, { pretty = true })
    valid_json_text(pretty, name .. " (pretty)")
  end)
end

T.test("the special keys of the encoder are data in decoded objects", function()
  local v = json.decode(BODIES.order)
  local text = json.encode(v)
  T.contains(text, '"__order":5')
  T.contains(text, '"b":1')
  T.eq(json.decode(text).x.b, 1)
  -- json.ordered objects still keep their order.
  T.eq(json.encode(json.ordered { "z", 1, "a", 2 }), '{"z":1,"a":2}')
end)

T.test("max_body bounds what is kept: ETOOBIG", function()
  local res, err, code = http.request(url() .. "/big/x", { max_body = 1024 * 1024, timeout = 10 })
  T.eq(res, nil)
  T.eq(code, "ETOOBIG")
  T.contains(err, "larger than 1048576 bytes")
end)

T.test("a hanging server: the timeout wins, ETIMEDOUT", function()
  local started = time.now()
  local res, err, code = prpc.call(url() .. "/hang", "Onboard.GetAttestationInfo", nil, { timeout = 0.5 })
  T.eq(res, nil)
  T.eq(code, "ETIMEDOUT", err)
  T.ok(time.now() - started < 20, "returned (generous bound)")
end)

T.test("invalid UTF-8 anywhere encodes as valid JSON", function()
  for _, s in ipairs({ "\255", "a\192\128b", "\237\160\128", "ok \226\130", "\244\144\128\128", string.rep("\200", 100) }) do
    local text = json.encode({ s = s, [s] = 1 })
    valid_json_text(text, string.format("%q", s))
  end
  T.eq(json.encode("h\195\169"), '"h\195\169"', "valid UTF-8 is kept as is")
end)

T.test("zz: close the server", function()
  if srv then srv:close() end
end)
