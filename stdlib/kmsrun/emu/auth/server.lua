-- The auth-policy server: auth-simple's HTTP behaviour (kmsrun.emu.auth.policy) over
-- kmsrun.lib.http_server, with the policy either in a file re-read on every request (as
-- auth-simple does, so an edit is live on the next request) or held in memory, and
-- every decision kept as evidence.
local server = require "kmsrun.lib.http_server"
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local time = require "kmsrun.time"
local json = require "kmsrun.lib.json_js"
local policy = require "kmsrun.emu.auth.policy"
local mutation_registry = require "kmsrun.emu.mutations"
local z = require "kmsrun.emu.auth.zod"

local M = {}
local Auth = {}
Auth.__index = Auth

M.__doc = {
  summary = "the auth-simple compatible auth-policy server (docs/auth-server.md)",
  funcs = {
    { name = "start", signature = "start(opts)", returns = "server | nil, err, code",
      doc = "Starts the server on `opts.host` (default `127.0.0.1`) and `opts.port` (default 0: any free port). "
        .. "The policy is in `opts.config_path`, re-read on every request like auth-simple, or held in memory; "
        .. "`opts.policy` (a table or JSON text) is the initial policy, written to the file when there is one. "
        .. "`opts.log_path` appends each decision as a JSON line; `opts.on_decision(entry)` and "
        .. "`opts.on_message(line)` (default stderr) observe decisions and config problems. "
        .. "`opts.mutations` (TEST ONLY: a list or \"a,b\" of the auth switches of emu/mutations.lua) removes "
        .. "policy rules, each announced with a WARNING line. "
        .. "The server has fields `url` (`http://127.0.0.1:PORT`), `host` and `port`." },
    { name = "server:set_policy", signature = "srv:set_policy(policy)", returns = "version, sha256 | nil, err, code",
      doc = "Replaces the policy atomically, live on the next request. A table is written as canonical JSON "
        .. "(keys sorted, empty lists as `[]`); a string verbatim, even invalid. Returns the new version "
        .. "(the initial policy is 0) and the SHA-256 hex of the text." },
    { name = "server:policy_hash", signature = "srv:policy_hash()", returns = "string | nil",
      doc = "The SHA-256 hex of the policy text in force, nil if there is none." },
    { name = "server:policy_text", signature = "srv:policy_text()", returns = "string | nil",
      doc = "The policy text in force, byte for byte (what `policy_hash` hashes), nil if there is none." },
    { name = "server:policy", signature = "srv:policy()", returns = "table, reason | nil",
      doc = "The policy in force with auth-simple's defaults filled in, and why the defaults replaced it if they did." },
    { name = "server:decisions", signature = "srv:decisions()", returns = "{entry, ...}",
      doc = "Every decision so far: `seq`, `time`, `path`, `status`, `decision` (`allow`, `deny`, `invalid`), "
        .. "`reason`, the identity sent (`mrAggregated`, `osImageHash`, `deviceId`, `appId`, `composeHash`, "
        .. "`tcbStatus`), and `policy_version`, `policy_sha256`, `policy_error` where the policy was read." },
    { name = "server:close", signature = "srv:close()", returns = "nothing", doc = "Stops listening. Idempotent." },
  },
}

local OPTIONS = {
  port = "number", host = "string", config_path = "string", policy = "table|string",
  log_path = "string", on_decision = "function", on_message = "function", mutations = "table|string",
}

local function check_options(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("auth.server.start: options must be a table, got " .. type(opts), 3) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("auth.server.start: unknown option '" .. tostring(k) .. "'", 3) end
    if not want:find(type(v), 1, true) then
      error(string.format("auth.server.start: option '%s' must be a %s, got %s", k, want:gsub("|", " or "), type(v)), 3)
    end
  end
  return opts
end

local function sha256_hex(text)
  return crypto.hex(crypto.sha256(text))
end

local function iso_time(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((t - secs) * 1000))
end

local function policy_text(p, who)
  if type(p) == "string" then return p end
  if type(p) ~= "table" then error(who .. ": policy must be a table or JSON text, got " .. type(p), 3) end
  local ok, text = pcall(policy.canonical, p)
  if not ok then error(who .. ": " .. tostring(text):gsub("^.-policy%.canonical: ", ""), 3) end
  return text
end

-- Policy files may be read by an auth-simple in a container running as another user:
-- keep the mode of the file being replaced, else world-readable (a policy is no secret).
local function write_policy(path, text)
  local st = fs.stat(path)
  return fs.write(path, text, { mode = st and st.mode or 420 })
end

function Auth:message(line)
  local ok, err = pcall(self.on_message, line)
  if not ok then io.stderr:write("auth server: on_message failed: ", tostring(err), "\n") end
end

-- The policy text in force: text | nil, log line (nil without a line: no policy set).
function Auth:source_text()
  if not self.config_path then return self.text end
  local data, err = fs.read(self.config_path)
  if data then return data end
  -- auth-simple tests existence first (existsSync: can the path be stat'ed), then reads.
  if not fs.exists(self.config_path) then return nil, "config file not found: " .. self.config_path end
  return nil, "failed to load config: " .. tostring(err)
end

-- The config in force and what it came from ({sha256, problem}); falls back to the
-- defaults exactly where auth-simple does, logging the same lines.
function Auth:current(quiet)
  local text, problem = self:source_text()
  if text == nil then
    if problem and not quiet then self:message(problem) end
    return policy.defaults(), { problem = problem }
  end
  if text ~= self.cache_text then
    local config, err = policy.load(text)
    self.cache_text, self.cache_config, self.cache_err, self.cache_sha = text, config, err, sha256_hex(text)
  end
  local source = { sha256 = self.cache_sha }
  if not self.cache_config then
    source.problem = "failed to load config: " .. self.cache_err
    if not quiet then self:message(source.problem) end
    return policy.defaults(), source
  end
  return self.cache_config, source
end

local IDENTITY = { "mrAggregated", "osImageHash", "deviceId", "appId", "composeHash", "tcbStatus" }

local function reason_of(outcome)
  if outcome.malformed then return "Malformed JSON in request body" end
  if outcome.status == 400 then return "invalid request: " .. z.summary(outcome.response.error.issues) end
  return outcome.response.reason
end

function Auth:record(req, outcome, source)
  self.seq = self.seq + 1
  local decision = "invalid"
  if outcome.status == 200 then decision = outcome.response.isAllowed and "allow" or "deny" end
  local e = json.ordered(
    "seq", self.seq,
    "time", iso_time(time.wall()),
    "path", req.path,
    "status", outcome.status,
    "decision", decision,
    "reason", reason_of(outcome))
  -- Identity as the KMS sent it (not normalised): what the evidence must show.
  local value = json.kind(outcome.value) == "object" and outcome.value or {}
  for _, k in ipairs(IDENTITY) do
    if type(value[k]) == "string" then
      e[k] = value[k]
      table.insert(json.key_order(e), k)
    end
  end
  if source then
    -- A version only names the policy when the file still holds what set_policy wrote.
    local version = self.version
    if self.config_path and source.sha256 ~= self.written_sha then version = nil end
    for _, kv in ipairs({ { "policy_version", version }, { "policy_sha256", source.sha256 }, { "policy_error", source.problem } }) do
      if kv[2] ~= nil then
        e[kv[1]] = kv[2]
        table.insert(json.key_order(e), kv[1])
      end
    end
  end
  self.log[#self.log + 1] = e
  if self.log_path then
    local ok, err = fs.append(self.log_path, json.encode(e) .. "\n")
    if not ok then self:message("failed to write the decision log: " .. tostring(err)) end
  end
  if self.on_decision then
    local ok, err = pcall(self.on_decision, e)
    if not ok then self:message("on_decision failed: " .. tostring(err)) end
  end
end

function Auth:handle(req)
  local source
  local function get_config()
    local config
    config, source = self:current()
    return config
  end
  local status, body, headers, outcome = policy.handle(req, get_config, self.mutations)
  if outcome then self:record(req, outcome, source) end
  return status, body, headers
end

-- Puts the policy text in force: in the policy file, or in memory without one.
function Auth:store(text)
  if self.config_path then
    local ok, err, code = write_policy(self.config_path, text)
    if not ok then return nil, err, code end
  else
    self.text = text
  end
  self.written_sha = sha256_hex(text)
  return true
end

--- Starts an auth server; see docs/auth-server.md. Returns the handle | nil, err, code.
function M.start(opts)
  opts = check_options(opts)
  local mutations, merr = mutation_registry.set(opts.mutations or {}, "auth")
  if not mutations then return nil, merr, "EINVAL" end
  local self = setmetatable({
    mutations = mutations,
    config_path = opts.config_path, log_path = opts.log_path, on_decision = opts.on_decision,
    on_message = opts.on_message or function(line) io.stderr:write(line, "\n") end,
    version = 0, seq = 0, log = {},
  }, Auth)
  if opts.policy ~= nil then
    local ok, err, code = self:store(policy_text(opts.policy, "auth.server.start"))
    if not ok then return nil, err, code end
  end
  local srv, err, code = server.listen(function(req) return self:handle(req) end,
    { host = opts.host or "127.0.0.1", port = opts.port or 0 })
  if not srv then return nil, err, code end
  self.http, self.host, self.port, self.url = srv, srv.host, srv.port, srv:url()
  for name in pairs(mutations) do
    self:message(string.format("WARNING: TEST-ONLY MUTATION ACTIVE: %s -- %s; this emulator deliberately misbehaves",
      name, mutation_registry.find(name).description))
  end
  return self
end

--- Replaces the policy atomically (a table, written as canonical JSON, or JSON text
-- written verbatim, even invalid, to test the fallback to the defaults). Live on the
-- very next request. Returns version, sha256 hex of the text | nil, err, code.
function Auth:set_policy(p)
  if self.closed then error("auth_server:set_policy: the server is closed", 2) end
  local ok, err, code = self:store(policy_text(p, "auth_server:set_policy"))
  if not ok then return nil, err, code end
  self.version = self.version + 1
  return self.version, self.written_sha
end

--- The SHA-256 hex of the policy text in force (nil when there is none).
function Auth:policy_hash()
  local text = self:source_text()
  return text and sha256_hex(text) or nil
end

--- The policy text in force, byte for byte (nil when there is none): what policy_hash hashes.
function Auth:policy_text()
  return (self:source_text())
end

--- The policy in force as the server applies it (defaults filled in; a copy), and
-- when the defaults replace a missing or invalid policy, why.
function Auth:policy()
  local config, source = self:current(true)
  return policy.validate(config), source.problem
end

--- Every decision so far (copies), oldest first.
function Auth:decisions()
  local out = {}
  for i, e in ipairs(self.log) do out[i] = json.import(e) end
  return out
end

--- Stops listening; idempotent.
function Auth:close()
  if self.closed then return end
  self.closed = true
  if self.http then self.http:close() end
end

Auth.__close = Auth.close

function Auth:__tostring()
  return string.format("auth server %s (%s)", self.url or "?", self.closed and "closed" or "listening")
end

return M
