-- prpc server side as the KMS's web stack does it (kms-protocol.md section 1): route shape
-- /prpc/<Method>, prefix stripping, JSON mode selection, request decoding (serde JSON, GET
-- query forms, binary protobuf), success and error encodings, all failures as HTTP 400.
local S = require "kmsrun.lib.json_serde"
local PB = require "kmsrun.lib.protobuf"
local hex = require "kmsrun.lib.hex"
local task = require "kmsrun.lib.task"

local M = {}

M.BODY_LIMIT = 10 * 1024 * 1024

local function unpercent(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Query fields in order: { {key, value}, ... }; a field without "=" has the value "".
function M.query_fields(q)
  local out = {}
  for part in (q or ""):gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=(.*)$")
    if not k then k, v = part, "" end
    out[#out + 1] = { unpercent(k, true), unpercent(v, true) }
  end
  return out
end

--- JSON mode rule 1/2: GET, or a `json` query field that is empty, "true" or "1".
function M.json_flag(req)
  if req.method == "GET" then return true end
  for _, f in ipairs(M.query_fields(req.query)) do
    if f[1] == "json" then return f[2] == "" or f[2] == "true" or f[2] == "1" end
  end
  return false
end

local function content_type_is_json(req)
  local ct = req.headers and req.headers["content-type"]
  if not ct then return false end
  local media = ct:match("^%s*([^;%s]+)")
  return media ~= nil and media:lower() == "application/json"
end

--- The segment after /prpc/, or nil when the path does not have the route's shape.
function M.route(path)
  local seg = path:match("^/prpc/([^/]+)$")
  if not seg then return nil end
  return unpercent(seg, false)
end

-- GET payloads are urlencoded forms (serde_qs); values arrive as strings.
local function decode_query(q, schema)
  local out = {}
  for _, f in ipairs(schema.fields) do
    local ty = f[2]
    if ty == "string" or ty == "bytes" then out[f[1]] = ""
    elseif ty == "bool" then out[f[1]] = false
    elseif ty == "u32" or ty == "u64" then out[f[1]] = 0
    elseif type(ty) == "table" and ty.list then out[f[1]] = {} end
  end
  for _, kv in ipairs(M.query_fields(q)) do
    local k, v = kv[1], kv[2]
    local ty = schema.by_name[k]
    if ty == "string" then out[k] = v
    elseif ty == "bytes" then
      local h = v
      while h:sub(1, 2) == "0x" do h = h:sub(3) end
      local b, err = hex.decode(h)
      if not b then return nil, err end
      out[k] = b
    elseif ty == "u32" or ty == "u64" then
      local n = v:match("^%d+$") and math.tointeger(tonumber(v))
      if not n then return nil, "invalid digit found in string" end
      if ty == "u32" and n > 4294967295 then return nil, "number too large to fit in target type" end
      out[k] = n
    elseif ty == "bool" then
      if v ~= "true" and v ~= "false" then return nil, "provided string was not `true` or `false`" end
      out[k] = v == "true"
    end
  end
  return out
end

local function encode_error(is_json, msg)
  if is_json then return S.error_body(msg), { ["Content-Type"] = "application/json" } end
  return PB.error_body(msg), { ["Content-Type"] = "application/octet-stream" }
end

--- A 400 answer carrying msg, encoded for the mode.
function M.error(is_json, msg)
  local body, headers = encode_error(is_json, msg)
  return 400, body, headers
end

--- Handles req for a service, or returns nil when the path is not a prpc route.
-- service = { prefix = "KMS.", methods = { Name = { input = schema|nil, output = schema|nil,
--   handler = function(call, input) -> result | nil, err } } }
-- opts.early(req) -> call | nil, err: runs before dispatch (client certificate checks);
-- opts.before(call) -> status, body, headers | nil: fault injection after method lookup.
-- Returns status, body, headers, info where info = { method = name, error = msg|nil }.
function M.handle(service, req, opts)
  opts = opts or {}
  local seg = M.route(req.path)
  if not seg then return nil end
  if req.method ~= "GET" and req.method ~= "POST" then return nil end
  local json = M.json_flag(req)
  local method = seg
  local prefix = service.prefix
  while prefix ~= "" and method:sub(1, #prefix) == prefix do method = method:sub(#prefix + 1) end
  local info = { method = method, segment = seg }

  -- Before dispatch: errors here are encoded by rule 1/2 only (not by Content-Type).
  local call, early_err = { req = req, method = method }, nil
  if opts.early then call, early_err = opts.early(req, method) end
  if not call then
    info.error = early_err
    local st, b, h = M.error(json, early_err)
    return st, b, h, info
  end
  call.req, call.method = req, method
  local payload
  if req.method == "POST" then
    payload = req.body or ""
    if #payload > M.BODY_LIMIT then
      info.error = "failed to read data: payload too large"
      local st, b, h = M.error(json, info.error)
      return st, b, h, info
    end
  else
    payload = req.query or ""
  end
  local is_json = json or content_type_is_json(req)

  local m = service.methods[method]
  if not m then
    info.error = "Service not found: " .. method
    local st, b, h = M.error(is_json, info.error)
    return st, b, h, info
  end
  if opts.before then
    local st, b, h = opts.before(call)
    if st then info.error = info.error or ("fault: HTTP " .. st); return st, b, h, info end
  end

  local input, derr
  if m.input then
    if payload == "" then
      input = is_json and assert(S.decode("{}", m.input)) or assert(PB.decode(m.input, ""))
    elseif is_json and req.method == "GET" then
      input, derr = decode_query(payload, m.input)
    elseif is_json then
      input, derr = S.decode(payload, m.input)
    else
      input, derr = PB.decode(m.input, payload)
    end
    if not input then
      info.error = derr
      local st, b, h = M.error(is_json, derr)
      return st, b, h, info
    end
  end

  local ok, result, herr = pcall(m.handler, call, input)
  if not ok then
    if task.is_cancelled(result) then error(result, 0) end
    info.error = "kms-sim (emulator) internal error: " .. tostring(result)
    return 500, info.error, { ["Content-Type"] = "text/plain" }, info
  end
  if result == nil then
    info.error = herr or "unknown error"
    local st, b, h = M.error(is_json, info.error)
    return st, b, h, info
  end
  if is_json then
    local body = m.output and require("kmsrun.kms.messages").to_json(m.output, result) or "null"
    return 200, body, { ["Content-Type"] = "application/json" }, info
  end
  local body = m.output and PB.encode(m.output, result) or ""
  return 200, body, { ["Content-Type"] = "application/octet-stream" }, info
end

-- The web framework's default 404 (not a prpc error body): HTML, or JSON if preferred.
function M.not_found(req)
  local accept = req.headers and req.headers["accept"] or ""
  if accept:find("application/json", 1, true) and not accept:find("text/html", 1, true) then
    return 404, '{\n  "error": {\n    "code": 404,\n    "reason": "Not Found",\n    "description": "The requested resource could not be found."\n  }\n}',
      { ["Content-Type"] = "application/json" }
  end
  return 404, table.concat({
    "<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "    <meta charset=\"utf-8\">",
    "    <title>404 Not Found</title>", "</head>", "<body align=\"center\">",
    "    <div role=\"main\" align=\"center\">", "        <h1>404: Not Found</h1>",
    "        <p>The requested resource could not be found.</p>", "        <hr />", "    </div>",
    "    <div role=\"contentinfo\" align=\"center\">", "        <small>kms-sim (emulator)</small>",
    "    </div>", "</body>", "</html>",
  }, "\n"), { ["Content-Type"] = "text/html; charset=utf-8" }
end

return M
