-- The auth policy against auth-simple: the recorded responses byte for byte, a
-- differential table of policies × boot infos, and malformed requests.
local T = require "kmsrun.lib.testing"
local json = require "kmsrun.lib.json_js"
local policy = require "kmsrun.emu.auth.policy"

local DATA = (os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/data/auth-simple-responses.json"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A config provider like the server's: nil stands for the absent file.
local function provider(config)
  return function()
    if config == nil then return policy.defaults() end
    return policy.validate(config) or policy.defaults()
  end
end

local function post(path, body, content_type)
  return { method = "POST", path = path, body = body,
    headers = { ["content-type"] = content_type == nil and "application/json" or content_type or nil } }
end

-- The recorded file ------------------------------------------------------------------

local recorded = assert(json.decode(read(DATA)))

T.test("recorded auth-simple responses: status and exact body bytes", function()
  T.ok(#recorded.cases >= 90, "the recorded file has its cases")
  for i, c in ipairs(recorded.cases) do
    local config = c.config ~= json.null and c.config or nil
    local req = { method = c.method, path = c.path, headers = {} }
    if c.request ~= json.null then req = post(c.path, json.encode(c.request)) end
    local status, body, headers = policy.handle(req, provider(config))
    local label = string.format("case %d (%s / %s %s / %s)", i, c.config_name, c.method, c.path, tostring(c.request_name))
    T.eq(status, c.status, label .. " status")
    -- json.encode keeps the recorded key order, so this compares the wire bytes.
    T.eq(body, json.encode(c.response), label .. " body")
    T.eq(json.decode(body), c.response, label .. " decoded body")
    T.eq(headers["content-type"], "application/json", label .. " content type")
  end
end)

T.test("recorded auth-simple responses through policy.decide", function()
  for i, c in ipairs(recorded.cases) do
    if c.method == "POST" then
      local status, response = policy.decide(c.config ~= json.null and c.config or nil, c.path, c.request)
      T.eq(status, c.status, "case " .. i)
      T.eq(json.encode(response), json.encode(c.response), "case " .. i)
    end
  end
end)

-- Differential table ---------------------------------------------------------------

local MR, OS, DEV = ("2b"):rep(32), ("1a"):rep(32), ("3c"):rep(32)
local APP, CH = ("5e"):rep(20), ("6f"):rep(32)
local OTHER = ("99"):rep(32)

local function boot(changes)
  local b = { teeVariant = "dstack-tdx", mrAggregated = MR, osImageHash = OS, mrSystem = ("77"):rep(32),
    appId = APP, composeHash = CH, instanceId = "", deviceId = DEV, keyProviderInfo = "",
    tcbStatus = "UpToDate", advisoryIds = json.array() }
  for k, v in pairs(changes or {}) do
    if v == json.null then b[k] = nil else b[k] = v end
  end
  return b
end

-- A policy that allows the base boot info on both paths.
local function allowing(changes)
  local p = { gatewayAppId = "gw", osImages = { "0x" .. OS }, kms = { mrAggregated = { "0x" .. MR } },
    apps = { ["0x" .. APP] = { composeHashes = { "0x" .. CH } } } }
  for k, v in pairs(changes or {}) do p[k] = v end
  return p
end

local KMS, APPP = "/bootAuth/kms", "/bootAuth/app"
local ALLOW = ""

-- { name, policy (table, JSON text, or nil = absent), path, boot changes, expected reason (ALLOW = allowed) }
local cases = {
  -- hex normalisation: case and 0x on either side
  { "uppercase 0X in config, bare lowercase request", allowing({ osImages = { "0X" .. OS:upper() } }), KMS, {}, ALLOW },
  { "bare config, 0x uppercase request", allowing({ osImages = { OS } }), KMS, { osImageHash = "0x" .. OS:upper() }, ALLOW },
  { "0X uppercase request", allowing(), KMS, { osImageHash = "0X" .. OS:upper(), mrAggregated = MR:upper() }, ALLOW },
  { "mr in config uppercase without 0x", allowing({ kms = { mrAggregated = { MR:upper() } } }), KMS, {}, ALLOW },
  { "app key uppercase without 0x", allowing({ apps = { [APP:upper()] = { composeHashes = { CH } } } }), APPP, {}, ALLOW },
  { "request appId uppercase with 0X", allowing(), APPP, { appId = "0X" .. APP:upper(), composeHash = CH:upper() }, ALLOW },
  { "device list matches across case", allowing({ kms = { mrAggregated = { MR }, devices = { "0x" .. DEV:upper() } } }), KMS, {}, ALLOW },
  { "empty hashes normalise to 0x", { osImages = { "" }, kms = { mrAggregated = { "0x" } } }, KMS,
    { osImageHash = "", mrAggregated = "" }, ALLOW },
  -- TCB status and advisories: exact, case-sensitive, checked first
  { "tcb status compared exactly", allowing(), KMS, { tcbStatus = "uptodate" }, "TCB status is not allowed" },
  { "missing tcbStatus is \"\" and denied", allowing(), KMS, { tcbStatus = json.null }, "TCB status is not allowed" },
  { "missing tcbStatus allowed when \"\" is listed", allowing({ allowedTcbStatuses = { "" } }), KMS, { tcbStatus = json.null }, ALLOW },
  { "OutOfDate allowed when listed", allowing({ allowedTcbStatuses = { "UpToDate", "OutOfDate" } }), KMS, { tcbStatus = "OutOfDate" }, ALLOW },
  { "empty allowedTcbStatuses denies all", allowing({ allowedTcbStatuses = {} }), KMS, {}, "TCB status is not allowed" },
  { "advisory denied by default", allowing(), KMS, { advisoryIds = { "INTEL-SA-00837" } }, "advisory ID is not allowed" },
  { "advisory allowed when listed", allowing({ allowedAdvisoryIds = { "INTEL-SA-00837" } }), KMS, { advisoryIds = { "INTEL-SA-00837" } }, ALLOW },
  { "advisory ids are case-sensitive", allowing({ allowedAdvisoryIds = { "INTEL-SA-00837" } }), KMS, { advisoryIds = { "intel-sa-00837" } }, "advisory ID is not allowed" },
  { "one unlisted advisory is enough", allowing({ allowedAdvisoryIds = { "A" } }), KMS, { advisoryIds = { "A", "B" } }, "advisory ID is not allowed" },
  { "tcb before advisory before OS", allowing(), KMS, { tcbStatus = "OutOfDate", advisoryIds = { "X" }, osImageHash = "00" }, "TCB status is not allowed" },
  { "advisory before OS", allowing(), APPP, { advisoryIds = { "X" }, osImageHash = "00" }, "advisory ID is not allowed" },
  { "OS before MR", allowing(), KMS, { osImageHash = "00", mrAggregated = OTHER }, "OS image is not allowed" },
  { "OS before app lookup", allowing(), APPP, { osImageHash = "00", appId = "00" }, "OS image is not allowed" },
  -- KMS path
  { "kms.mrAggregated empty denies every KMS", allowing({ kms = { mrAggregated = {} } }), KMS, {}, "aggregated MR not allowed" },
  { "other MR", allowing(), KMS, { mrAggregated = OTHER }, "aggregated MR not allowed" },
  { "allowAnyDevice false with empty devices allows any", allowing({ kms = { mrAggregated = { MR }, devices = {}, allowAnyDevice = false } }), KMS, { deviceId = OTHER }, ALLOW },
  { "device pinned, other device", allowing({ kms = { mrAggregated = { MR }, devices = { DEV } } }), KMS, { deviceId = OTHER }, "KMS is not allowed to boot on this device" },
  { "device pinned, same device", allowing({ kms = { mrAggregated = { MR }, devices = { DEV } } }), KMS, {}, ALLOW },
  { "device pinned but allowAnyDevice", allowing({ kms = { mrAggregated = { MR }, devices = { DEV }, allowAnyDevice = true } }), KMS, { deviceId = OTHER }, ALLOW },
  { "MR before device", allowing({ kms = { mrAggregated = { MR }, devices = { DEV } } }), KMS, { mrAggregated = OTHER, deviceId = OTHER }, "aggregated MR not allowed" },
  { "KMS path ignores apps", allowing({ apps = {} }), KMS, { appId = "00", composeHash = "00" }, ALLOW },
  -- app path
  { "app not registered", allowing(), APPP, { appId = ("ab"):rep(20) }, "app not registered" },
  { "app path ignores kms rules", allowing({ kms = { mrAggregated = {} } }), APPP, { mrAggregated = OTHER }, ALLOW },
  { "compose hash not allowed", allowing(), APPP, { composeHash = OTHER }, "compose hash not allowed" },
  { "empty composeHashes denies", allowing({ apps = { [APP] = {} } }), APPP, {}, "compose hash not allowed" },
  { "app device pinned, other device", allowing({ apps = { [APP] = { composeHashes = { CH }, devices = { DEV } } } }), APPP, { deviceId = OTHER }, "app is not allowed to boot on this device" },
  { "app device pinned, allowAnyDevice", allowing({ apps = { [APP] = { composeHashes = { CH }, devices = { DEV }, allowAnyDevice = true } } }), APPP, { deviceId = OTHER }, ALLOW },
  { "compose hash before app device", allowing({ apps = { [APP] = { composeHashes = { CH }, devices = { DEV } } } }), APPP, { composeHash = OTHER, deviceId = OTHER }, "compose hash not allowed" },
  -- two keys naming the same app: the first in JavaScript key order wins
  { "duplicate app keys: first in file order", string.format('{"osImages":["%s"],"apps":{"0x%s":{"composeHashes":["0x11"]},"%s":{"composeHashes":["%s"]}}}', OS, APP:upper(), APP, CH),
    APPP, {}, "compose hash not allowed" },
  { "duplicate app keys: array-index keys come first", string.format('{"osImages":["%s"],"apps":{"0x12":{"composeHashes":["0x11"]},"12":{"composeHashes":["%s"]}}}', OS, CH),
    APPP, { appId = "12" }, ALLOW },
  -- fields that never influence the decision
  { "teeVariant, instanceId, mrSystem are ignored", allowing(), KMS, { teeVariant = "x", instanceId = "y", mrSystem = "z" }, ALLOW },
  -- the policy itself: absent, invalid, or with one bad field means all defaults
  { "absent policy denies", nil, KMS, {}, "OS image is not allowed" },
  { "empty policy denies", {}, APPP, {}, "OS image is not allowed" },
  { "chainId as a string invalidates the whole policy", allowing({ chainId = "1" }), KMS, {}, "OS image is not allowed" },
  { "kms.allowAnyDevice not boolean invalidates", allowing({ kms = { mrAggregated = { MR }, allowAnyDevice = "yes" } }), KMS, {}, "OS image is not allowed" },
  { "apps as an array invalidates", allowing({ apps = { "x" } }), APPP, {}, "OS image is not allowed" },
  { "a number among osImages invalidates", allowing({ osImages = { OS, 5 } }), KMS, {}, "OS image is not allowed" },
  { "null gatewayAppId invalidates", '{"gatewayAppId":null,"osImages":["' .. OS .. '"]}', KMS, {}, "OS image is not allowed" },
  { "broken JSON invalidates", '{"osImages":["' .. OS .. '"],}', KMS, {}, "OS image is not allowed" },
  { "unknown keys are ignored", allowing({ comment = "x", kms = { mrAggregated = { MR }, note = 1 } }), KMS, {}, ALLOW },
}

for _, c in ipairs(cases) do
  T.test("decision: " .. c[1], function()
    local config = c[2]
    if type(config) == "string" then config = policy.load(config) or policy.defaults() end
    local status, response = policy.decide(config, c[3], boot(c[4]))
    T.eq(status, 200)
    T.eq(response.isAllowed, c[5] == ALLOW, "isAllowed")
    T.eq(response.reason, c[5], "reason")
    local valid = type(c[2]) == "string" and policy.load(c[2]) or type(c[2]) == "table" and policy.validate(c[2])
    T.eq(response.gatewayAppId, valid and valid.gatewayAppId or "", "gatewayAppId")
    T.eq(json.keys(response), { "isAllowed", "reason", "gatewayAppId" }, "key order")
  end)
end

-- Malformed requests -----------------------------------------------------------------

local ALL_REQUIRED = { "mrAggregated", "osImageHash", "appId", "composeHash", "instanceId", "deviceId" }

local function issue(path, expected, received)
  return string.format('{"code":"invalid_type","expected":"%s","received":"%s","path":%s,"message":"%s"}',
    expected, received, path, received == "undefined" and "Required" or ("Expected " .. expected .. ", received " .. received))
end

local function zod_body(...)
  return '{"success":false,"error":{"issues":[' .. table.concat({ ... }, ",") .. '],"name":"ZodError"}}'
end

local function all_required()
  local issues = {}
  for i, k in ipairs(ALL_REQUIRED) do issues[i] = issue('["' .. k .. '"]', "string", "undefined") end
  return zod_body(table.unpack(issues))
end

local function answer(req)
  local status, body, headers = policy.handle(req, provider(allowing()))
  return status, body, headers["content-type"]
end

local function body_with(changes) return json.encode(boot(changes)) end

local bad_bodies = {
  { "missing deviceId", body_with({ deviceId = json.null }), zod_body(issue('["deviceId"]', "string", "undefined")) },
  { "number for a string", body_with({ mrAggregated = 5 }), zod_body(issue('["mrAggregated"]', "string", "number")) },
  { "null for a string", (body_with():gsub('"mrAggregated":"%x+"', '"mrAggregated":null')),
    zod_body(issue('["mrAggregated"]', "string", "null")) },
  { "boolean tcbStatus", body_with({ tcbStatus = false }), zod_body(issue('["tcbStatus"]', "string", "boolean")) },
  { "advisoryIds not an array", body_with({ advisoryIds = "x" }), zod_body(issue('["advisoryIds"]', "array", "string")) },
  { "advisoryIds as an object", '{"mrAggregated":"","osImageHash":"","appId":"","composeHash":"","instanceId":"","deviceId":"","advisoryIds":{}}',
    zod_body(issue('["advisoryIds"]', "array", "object")) },
  { "bad advisoryIds elements report 0-based indexes", body_with({ advisoryIds = json.array({ 1, "a", true }) }),
    zod_body(issue('["advisoryIds",0]', "string", "number"), issue('["advisoryIds",2]', "string", "boolean")) },
  { "several issues come in schema order",
    '{"tcbStatus":3,"deviceId":1,"osImageHash":"","appId":"","composeHash":"","instanceId":"","mrSystem":[]}',
    zod_body(issue('["mrAggregated"]', "string", "undefined"), issue('["deviceId"]', "string", "number"),
      issue('["tcbStatus"]', "string", "number"), issue('["mrSystem"]', "string", "array")) },
  { "an array body", "[]", zod_body(issue("[]", "object", "array")) },
  { "a null body", "null", zod_body(issue("[]", "object", "null")) },
  { "a string body", '"x"', zod_body(issue("[]", "object", "string")) },
  { "an empty object", "{}", all_required() },
}

for _, c in ipairs(bad_bodies) do
  T.test("malformed body: " .. c[1], function()
    for _, path in ipairs({ KMS, APPP }) do
      local status, body, ct = answer(post(path, c[2]))
      T.eq(status, 400, path)
      T.eq(body, c[3], path)
      T.eq(ct, "application/json")
    end
  end)
end

T.test("broken JSON with a JSON content type is a plain-text 400", function()
  for _, text in ipairs({ "{", "", " ", '{"a":1,}', "[1", "nul", "NaN", "0x10", body_with() .. "x" }) do
    local status, body, ct = answer(post(KMS, text))
    T.eq(status, 400, text)
    T.eq(body, "Malformed JSON in request body", text)
    T.eq(ct, "text/plain;charset=UTF-8")
  end
end)

T.test("without a JSON content type the body is {}", function()
  for _, ct in ipairs({ false, "text/plain", "application/jsonx", "application/json;", "application/json; charset=",
    "application/json, text/plain", "text/json", "application/x-www-form-urlencoded" }) do
    for _, text in ipairs({ body_with(), "{" }) do
      local status, body = answer(post(KMS, text, ct))
      T.eq(status, 400, tostring(ct))
      T.eq(body, all_required(), tostring(ct))
    end
  end
end)

T.test("JSON content types hono accepts", function()
  for _, ct in ipairs({ "application/json", "application/json; charset=utf-8", "Application/JSON",
    "APPLICATION/JSON;CHARSET=UTF-8", "application/vnd.api+json", "application/json;charset=utf-8;foo=bar",
    "application/json;\tcharset=utf-8" }) do
    T.ok(policy.is_json_content_type(ct), ct)
    local status, body = answer(post(KMS, body_with(), ct))
    T.eq(status, 200, ct)
    T.eq(body, '{"isAllowed":true,"reason":"","gatewayAppId":"gw"}', ct)
  end
  for _, ct in ipairs({ "application/a+b+json", "application/json ;charset=utf-8", "application/+json" }) do
    T.ok(not policy.is_json_content_type(ct), ct)
  end
end)

T.test("a byte-order mark before the body is dropped, extra keys ignored", function()
  local status, body = answer(post(APPP, "\239\187\191" .. body_with({ extra = { 1, 2 } })))
  T.eq(status, 200)
  T.eq(body, '{"isAllowed":true,"reason":"","gatewayAppId":"gw"}')
end)

-- Routes ------------------------------------------------------------------------------

T.test("routes: other methods and paths are 404 text", function()
  for _, r in ipairs({ { "GET", KMS }, { "GET", APPP }, { "POST", "/" }, { "PUT", KMS }, { "DELETE", "/" },
    { "GET", "/x" }, { "POST", "/bootAuth/kms/" }, { "POST", "/bootauth/kms" }, { "POST", "/bootAuth%2Fkms" },
    { "POST", "//bootAuth/kms" }, { "OPTIONS", "/" } }) do
    local status, body, ct = answer({ method = r[1], path = r[2], headers = { ["content-type"] = "application/json" }, body = body_with() })
    T.eq(status, 404, r[1] .. " " .. r[2])
    T.eq(body, "404 Not Found")
    T.eq(ct, "text/plain; charset=UTF-8")
  end
end)

T.test("routes: percent-escapes and dot segments resolve like a URL parser", function()
  for _, path in ipairs({ "/bootAuth/%6bms", "/bootAuth/./kms", "/bootAuth/x/../kms", "/%62ootAuth/kms", "/bootAuth/kms?x=1" }) do
    local status = answer(post(path, body_with()))
    T.eq(status, 200, path)
  end
end)

T.test("GET / answers the info in auth-simple's key order; HEAD has no body", function()
  local status, body = answer({ method = "GET", path = "/" })
  T.eq(status, 200)
  T.eq(body, '{"status":"ok","kmsContractAddr":"0x0000000000000000000000000000000000000000","gatewayAppId":"gw",' ..
    '"chainId":0,"appAuthImplementation":"0x0000000000000000000000000000000000000000",' ..
    '"appImplementation":"0x0000000000000000000000000000000000000000"}')
  local hstatus, hbody, ct = answer({ method = "HEAD", path = "/" })
  T.eq({ hstatus, hbody, ct }, { 200, "", "application/json" })
  local cfg = policy.load('{"chainId":1.5,"kmsContractAddr":"0xK","appImplementation":"a/b","gatewayAppId":"é\\n"}')
  local _, info = policy.handle({ method = "GET", path = "/" }, function() return cfg end)
  T.eq(info, '{"status":"ok","kmsContractAddr":"0xK","gatewayAppId":"é\\n","chainId":1.5,"appAuthImplementation":"a/b","appImplementation":"a/b"}')
end)

T.test("the config is read only for requests that pass validation", function()
  local reads = 0
  local function get() reads = reads + 1; return policy.defaults() end
  policy.handle(post(KMS, "{"), get)
  policy.handle(post(KMS, "{}"), get)
  policy.handle({ method = "GET", path = "/nope" }, get)
  T.eq(reads, 0)
  policy.handle(post(KMS, body_with()), get)
  policy.handle({ method = "GET", path = "/" }, get)
  T.eq(reads, 2)
end)

-- Loading, defaults, canonical form -----------------------------------------------------

T.test("defaults are auth-simple's", function()
  local d = policy.defaults()
  T.eq(json.encode(d), '{"gatewayAppId":"","kmsContractAddr":"0x0000000000000000000000000000000000000000",' ..
    '"chainId":0,"appImplementation":"0x0000000000000000000000000000000000000000","osImages":[],' ..
    '"allowedTcbStatuses":["UpToDate"],"allowedAdvisoryIds":[],"kms":{"mrAggregated":[],"devices":[],' ..
    '"allowAnyDevice":false},"apps":{}}')
end)

T.test("load reports why a policy is rejected", function()
  local cfg, err = policy.load('{"chainId":"1"}')
  T.eq(cfg, nil)
  T.eq(err, "ZodError: chainId: Expected number, received string")
  cfg, err = policy.load('{"apps":{"0xab":{"devices":[1]}}}')
  T.eq(err, "ZodError: apps.0xab.devices.0: Expected string, received number")
  cfg, err = policy.load("{")
  T.match(err, "^invalid JSON at byte 2")
  T.ok(policy.load("{}"), "an empty policy is valid")
  T.raises(function() policy.load(nil) end, "policy.load: text must be a string")
end)

T.test("normalize", function()
  T.eq(policy.normalize("ABcd"), "0xabcd")
  T.eq(policy.normalize("0XAB"), "0xab")
  T.eq(policy.normalize("0xab"), "0xab")
  T.eq(policy.normalize(""), "0x")
end)

T.test("canonical JSON: sorted keys, empty lists stay arrays, maps stay objects", function()
  local text = policy.canonical({ osImages = {}, kms = { mrAggregated = {}, devices = {} }, apps = {}, gatewayAppId = "g/w" })
  T.eq(text, '{"apps":{},"gatewayAppId":"g/w","kms":{"devices":[],"mrAggregated":[]},"osImages":[]}')
  T.eq(policy.canonical({ apps = { ["0xab"] = { composeHashes = {} } } }), '{"apps":{"0xab":{"composeHashes":[]}}}')
  T.eq(policy.canonical(policy.defaults()), policy.canonical(json.decode(json.encode(policy.defaults()))))
  T.raises(function() policy.canonical({ osImages = { print } }) end, "policy.canonical: cannot encode a function")
  T.raises(function() policy.canonical("x") end, "policy.canonical: policy must be a table")
end)

T.test("decide: misuse raises", function()
  T.raises(function() policy.decide(nil, "/bootAuth/x", {}) end, "policy.decide: path must be")
end)

-- The JSON module's JavaScript semantics -------------------------------------------------

T.test("json: numbers print as in JavaScript", function()
  local cases = { { 0, "0" }, { -0.0, "0" }, { 1.5, "1.5" }, { 1e21, "1e+21" }, { 1e20, "100000000000000000000" },
    { 1e-7, "1e-7" }, { 0.000001, "0.000001" }, { 0.1, "0.1" }, { 2 ^ 53, "9007199254740992" }, { 1 / 0, "null" },
    { 5e-324, "5e-324" }, { 123456789012345678901234.0, "1.2345678901234569e+23" }, { -2.5e-8, "-2.5e-8" } }
  for _, c in ipairs(cases) do T.eq(json.number(c[1]), c[2], tostring(c[1])) end
  T.eq(json.encode(json.decode("[9007199254740993,1e999,-0,1E+2]")), "[9007199254740992,null,0,100]")
end)

T.test("json: strings, key order, duplicates, strictness", function()
  T.eq(json.encode("a/b\"\\\1\n"), '"a/b\\"\\\\\\u0001\\n"')
  T.eq(json.encode(json.decode('{"b":1,"a":2,"b":3}')), '{"b":3,"a":2}')
  T.eq(json.decode('"\\ud83d\\ude00\\u00e9"'), "😀é")
  for _, bad in ipairs({ "01", "1.", "[1,]", "{'a':1}", '"\1"', "tru", "[1 2]", '{"a" 1}', "+1", ".5" }) do
    T.eq(json.decode(bad), nil, bad)
  end
  -- Any depth, as JSON.parse: the parser keeps its own stack.
  local deep = json.decode(string.rep("[", 300000) .. string.rep("]", 300000))
  T.eq(json.kind(deep), "array")
end)

T.test("a body nested deeper than Lua's call depth still gets zod's answer", function()
  local status, body = answer(post(KMS, string.rep("[", 300000) .. string.rep("]", 300000)))
  T.eq(status, 400)
  T.eq(body, zod_body(issue("[]", "object", "array")))
  status, body = answer(post(KMS, '{"mrAggregated":' .. string.rep("[", 300000) .. string.rep("]", 300000) .. "}"))
  T.eq(status, 400)
  T.match(body, '^{"success":false,"error":{"issues":%[{"code":"invalid_type","expected":"string","received":"array","path":%["mrAggregated"%]')
end)
