-- auth-simple's policy semantics, pure (no I/O): the config schema and its defaults,
-- hex normalisation, the decision order and reason strings, and the HTTP-level
-- behaviour of its three routes (request validation, 400 bodies, 404), so that a
-- policy file written for auth-simple decides the same way here.
local json = require "kmsrun.lib.json_js"
local z = require "kmsrun.emu.auth.zod"

local M = {}

local ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

local function strings() return z.array(z.string()) end

-- kms and each app: an allowlist (MRs or compose hashes) plus the device rule.
local function allowlist(list_key)
  return z.object({
    { list_key, strings():default({}) },
    { "devices", strings():default({}) },
    { "allowAnyDevice", z.boolean():default(false) },
  })
end

--- The policy file schema (auth-simple's AuthConfigSchema): every key optional,
-- unknown keys ignored, one wrong type invalidates the whole file.
M.CONFIG = z.object({
  { "gatewayAppId", z.string():default("") },
  { "kmsContractAddr", z.string():default(ZERO_ADDRESS) },
  { "chainId", z.number():default(0) },
  { "appImplementation", z.string():default(ZERO_ADDRESS) },
  { "osImages", strings():default({}) },
  { "allowedTcbStatuses", strings():default({ "UpToDate" }) },
  { "allowedAdvisoryIds", strings():default({}) },
  { "kms", allowlist("mrAggregated"):default({}) },
  { "apps", z.record(allowlist("composeHashes")):default({}) },
})

--- The request body schema of both POST routes (auth-simple's BootInfoSchema).
M.BOOT_INFO = z.object({
  { "teeVariant", z.string():optional():default("") },
  { "mrAggregated", z.string() },
  { "osImageHash", z.string() },
  { "appId", z.string() },
  { "composeHash", z.string() },
  { "instanceId", z.string() },
  { "deviceId", z.string() },
  { "tcbStatus", z.string():optional():default("") },
  { "advisoryIds", strings():optional():default({}) },
  { "mrSystem", z.string():optional():default("") },
})

--- The all-defaults config, in force when the policy is absent or invalid: it denies
-- every boot (no OS image is allowed).
function M.defaults()
  return (M.CONFIG:parse(json.object()))
end

--- Validates a policy value (decoded JSON or a Lua table): config with defaults | nil, message.
function M.validate(value)
  local config, issues = M.CONFIG:parse(value)
  if not config then return nil, "ZodError: " .. z.summary(issues) end
  return config
end

--- Parses and validates policy JSON text: config | nil, message. The caller falls back
-- to M.defaults() on nil, as auth-simple does.
function M.load(text)
  if type(text) ~= "string" then error("policy.load: text must be a string, got " .. type(text), 2) end
  local value, err = json.decode(text)
  if value == nil then return nil, err end
  return M.validate(value)
end

--- The canonical JSON of a policy table: compact, keys sorted, lists as arrays even
-- when empty. Values that do not fit the schema are written as they are (the server
-- then falls back to the defaults, like auth-simple would).
function M.canonical(policy)
  if type(policy) ~= "table" then error("policy.canonical: policy must be a table, got " .. type(policy), 2) end
  local ok, text = pcall(function() return json.encode(M.CONFIG:shape(json.import(policy)), { sort_keys = true }) end)
  if not ok then error("policy.canonical: " .. tostring(text):gsub("^json[%.%w]*: ", ""), 2) end
  return text
end

--- auth-simple's normalizeHex: lowercase, then "0x" in front unless already there.
-- (JS lowercases non-ASCII letters too; hex never has any.)
function M.normalize(hex)
  hex = hex:lower()
  if hex:sub(1, 2) ~= "0x" then hex = "0x" .. hex end
  return hex
end

local function contains(list, value, normalize)
  for _, x in ipairs(list) do
    if (normalize and M.normalize(x) or x) == value then return true end
  end
  return false
end

local function device_allowed(rules, device_id)
  if rules.allowAnyDevice or #rules.devices == 0 then return true end
  return contains(rules.devices, device_id, true)
end

local function find_app(apps, app_id)
  for _, key in ipairs(z.js_keys(apps)) do
    if M.normalize(key) == app_id then return apps[key] end
  end
end

-- The first rule that denies, or nil; the order is auth-simple's and decides the reason.
-- skip: the set of test-only mutations (emu/mutations.lua) that remove a rule.
local function deny_reason(config, is_kms, boot, skip)
  if not skip["auth-ignore-tcb-status"] then
    if not contains(config.allowedTcbStatuses, boot.tcbStatus) then return "TCB status is not allowed" end
    for _, id in ipairs(boot.advisoryIds) do
      if not contains(config.allowedAdvisoryIds, id) then return "advisory ID is not allowed" end
    end
  end
  if not skip["auth-ignore-os-image"] and not contains(config.osImages, M.normalize(boot.osImageHash), true) then
    return "OS image is not allowed"
  end
  local device_id = M.normalize(boot.deviceId)
  local any_device = skip["auth-ignore-device"]
  if is_kms then
    if not contains(config.kms.mrAggregated, M.normalize(boot.mrAggregated), true) then
      return "aggregated MR not allowed"
    end
    if not any_device and not device_allowed(config.kms, device_id) then return "KMS is not allowed to boot on this device" end
    return nil
  end
  local app = find_app(config.apps, M.normalize(boot.appId))
  if not app then return "app not registered" end
  if not contains(app.composeHashes, M.normalize(boot.composeHash), true) then return "compose hash not allowed" end
  if not any_device and not device_allowed(app, device_id) then return "app is not allowed to boot on this device" end
  return nil
end

local KIND = { ["/bootAuth/kms"] = "kms", ["/bootAuth/app"] = "app" }

-- The 200 answer for a valid boot info; get_config is only called here because
-- auth-simple reads its policy only once the request has passed validation.
local function answer(get_config, kind, boot, skip)
  local ok, config, reason = pcall(function()
    local config = get_config()
    return config, deny_reason(config, kind == "kms", boot, skip or {})
  end)
  if not ok then
    -- auth-simple's catch-all answer: still 200, and note its different key order.
    return json.ordered("isAllowed", false, "gatewayAppId", "", "reason", tostring(config))
  end
  return json.ordered("isAllowed", reason == nil, "reason", reason or "", "gatewayAppId", config.gatewayAppId)
end

local function kind_of(path)
  local kind = KIND[path]
  if not kind then error("policy.decide: path must be /bootAuth/kms or /bootAuth/app, got " .. tostring(path), 3) end
  return kind
end

--- Decides a boot request as auth-simple does. config: a policy (validated here;
-- nil or invalid means the defaults); path: "/bootAuth/kms" or "/bootAuth/app";
-- body: the request body as a table. Returns status (200, or 400 for a body that
-- fails the schema), the response table, and the validated boot info (nil on 400).
function M.decide(config, path, body, skip)
  local kind = kind_of(path)
  local boot, issues = M.BOOT_INFO:parse(body)
  if not boot then return 400, z.error_body(issues) end
  local function get_config() return config and M.validate(config) or M.defaults() end
  return 200, answer(get_config, kind, boot, skip), boot
end

--- The GET / answer for a validated config.
function M.info(config)
  return json.ordered(
    "status", "ok",
    "kmsContractAddr", config.kmsContractAddr,
    "gatewayAppId", config.gatewayAppId,
    "chainId", config.chainId,
    "appAuthImplementation", config.appImplementation,
    "appImplementation", config.appImplementation)
end

-- HTTP level ------------------------------------------------------------------------

--- True if a Content-Type value makes hono parse the body as JSON (its validator's
-- pattern: application/json or application/<x>+json, optional parameters, any case).
function M.is_json_content_type(value)
  if type(value) ~= "string" then return false end
  local rest = value:lower():match("^application/(.*)$")
  if not rest then return false end
  local params = rest:match("^json(.*)$") or rest:match("^[a-z%-%.]+%+json(.*)$")
  if not params then return false end
  while params ~= "" do
    local param = params:match("^;%s*[%w%-]+=[^;]+")
    if not param then return false end
    params = params:sub(#param + 1)
  end
  return true
end

-- Percent-escapes of unreserved characters are decoded and dot segments removed before
-- routing, as the URL parser and hono's getPath do; anything else must match exactly.
local function route_path(path)
  path = path:match("^[^?#]*")
  if path:sub(1, 1) ~= "/" then return path end
  path = path:gsub("\\", "/"):gsub("%%(%x%x)", function(hex)
    local c = string.char(tonumber(hex, 16))
    return c:match("[%w%-%._~]") and c or nil
  end)
  local out = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do out[#out + 1] = seg end
  local stack = {}
  for i = 2, #out do
    local seg = out[i]
    if seg == ".." then
      if #stack > 0 then stack[#stack] = nil end
      if i == #out then stack[#stack + 1] = "" end
    elseif seg == "." then
      if i == #out then stack[#stack + 1] = "" end
    else
      stack[#stack + 1] = seg
    end
  end
  return "/" .. table.concat(stack, "/")
end

local JSON_HEADERS = { ["content-type"] = "application/json" }
local TEXT_HEADERS = { ["content-type"] = "text/plain; charset=UTF-8" }

local function header(headers, name)
  for k, v in pairs(headers or {}) do
    if k:lower() == name then return type(v) == "table" and table.concat(v, ", ") or v end
  end
end

-- hono's json validator: no JSON content type means an empty object; a JSON content type
-- with a body JSON.parse rejects is a plain-text 400.
local function request_value(req)
  if not M.is_json_content_type(header(req.headers, "content-type")) then return json.object() end
  local text = (req.body or ""):gsub("^\239\187\191", "") -- the fetch body reader drops a BOM
  return json.decode(text)
end

--- Answers one HTTP request as auth-simple would. req: {method, path, headers, body};
-- get_config(): the config in force (called only where auth-simple reads its file).
-- Returns status, body text, headers, and for the two POST routes an outcome table
-- {kind, status, response, boot, value} describing the decision (nil otherwise).
function M.handle(req, get_config, skip)
  local method, path = req.method, route_path(req.path or "/")
  -- hono answers HEAD like GET, without the body.
  if method == "HEAD" then
    local status, _, headers = M.handle({ method = "GET", path = path, headers = req.headers }, get_config)
    return status, "", headers
  end
  if method == "GET" and path == "/" then
    local ok, answer = pcall(function() return json.encode(M.info(get_config())) end)
    if not ok then
      return 500, json.encode(json.ordered("status", "error", "message", tostring(answer))), JSON_HEADERS
    end
    return 200, answer, JSON_HEADERS
  end
  local kind = KIND[path]
  if method ~= "POST" or not kind then return 404, "404 Not Found", TEXT_HEADERS end
  local value = request_value(req)
  if value == nil then
    return 400, "Malformed JSON in request body", { ["content-type"] = "text/plain;charset=UTF-8" },
      { kind = kind, status = 400, malformed = true }
  end
  local boot, issues = M.BOOT_INFO:parse(value)
  local status, response = 400, nil
  if boot then
    status, response = 200, answer(get_config, kind, boot, skip)
  else
    response = z.error_body(issues)
  end
  return status, json.encode(response), JSON_HEADERS,
    { kind = kind, status = status, response = response, boot = boot, value = value }
end

return M
