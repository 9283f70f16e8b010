-- The auth servers of a run and the policies they serve: started (or adopted
-- when external), flipped with a version, the exact bytes served and a diff
-- against the previous policy kept as evidence.
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local linediff = require "kmsrun.lib.linediff"
local http = require "kmsrun.http"
local events = require "kmsrun.report.events"
local steps = require "kmsrun.dsl.steps"
local server = require "kmsrun.emu.auth.server"
local policies = require "kmsrun.kms.policies"

local Run = {} -- the methods, mixed into run/runner.lua's Run
local M = { methods = Run }

function Run:policy_state()
  local s = {}
  for name, v in pairs(self.policy_versions) do s[name] = { version = v.version, sha256 = v.sha256, policy = v.description } end
  return s
end

-- Auth servers first: KMS configs point at them. Returns whether they all started.
function Run:start_auth_servers()
  local ok, aerr = pcall(function()
    for _, auth in ipairs(self.runbook.auths) do self:start_auth(auth) end
  end)
  if not ok then
    self.error = tostring(aerr)
    self.infra_error = true
  end
  return ok
end

function Run:start_auth(auth)
  local initial = auth.spec.policy or policies.deny_all()
  if initial.__kind ~= "policy" then initial = policies.custom(initial) end
  if auth.spec.url then
    auth.url = auth.spec.url:gsub("/+$", "")
    auth.external = true
    if auth.spec.config_path then
      local original = fs.read(auth.spec.config_path)
      -- The undo record lets `kmsrun cleanup` restore the file after a killed run.
      local path = auth.spec.config_path
      if path:sub(1, 1) ~= "/" then path = fs.cwd() .. "/" .. path end
      self:defer("restore the original policy of " .. auth.name, function()
        if original then fs.write(auth.spec.config_path, original, { mode = 420 }) end
      end, original and { kind = "file", path = path, content = original } or nil)
    end
  else
    self.evidence:mkdir("logs")
    -- TEST ONLY: the target may switch off rules of the auth emulator (sim: sim_mutation).
    local mutations = self.target.auth_mutations and self.target.auth_mutations(self.target_ctx) or nil
    -- A target whose instances run elsewhere may need the servers on another
    -- address (the vmm target's auth_bind); loopback otherwise.
    local host = self.target.auth_bind and self.target.auth_bind(self.target_ctx) or "127.0.0.1"
    local srv, err = server.start { host = host, port = 0, policy = initial.config,
      log_path = self.evidence:path("logs/" .. auth.name .. ".decisions.ndjson"), mutations = mutations }
    if not srv then
      self.infra_error = true
      error("cannot start auth server " .. auth.name .. ": " .. tostring(err), 0)
    end
    auth.server = srv
    -- The operator's view: a wildcard bind is reached on loopback from here.
    auth.url = (host == "0.0.0.0" or host == "::") and string.format("http://127.0.0.1:%d", srv.port) or srv.url
    self:defer("stop auth server " .. auth.name, function() srv:close() end)
  end
  self.policy_versions[auth.name] = { version = 0, sha256 = "", description = initial.description }
  -- The first flip's diff starts from the policy the server started with.
  self.policy_texts = self.policy_texts or {}
  self.policy_texts[auth.name] = json.encode(initial.config, { pretty = true }) .. "\n"
end

local function sha256_hex(s) return crypto.hex(crypto.sha256(s)) end

function Run:set_policy(auth, policy)
  local pretty = json.encode(policy.config, { pretty = true }) .. "\n"
  local text = pretty
  local version, sha
  if auth.server then
    local err
    version, sha = auth.server:set_policy(policy.config)
    if not version then steps.fail("policy of " .. auth.name .. " replaced", tostring(sha), nil, "INFRA") end
    -- The evidence holds the exact bytes served, so it hashes to the recorded value.
    text, err = auth.server:policy_text()
    if not text then steps.fail("policy of " .. auth.name .. " readable", tostring(err), nil, "INFRA") end
    -- Confirm the server serves what we set before the next step runs: it
    -- answers over HTTP and its policy in force hashes to what was written.
    local info, herr = http.request(auth.url .. "/", { timeout = 5 })
    if not info or info.status ~= 200 then
      steps.fail("auth server " .. auth.name .. " answering GET /", info and ("HTTP " .. info.status) or herr, nil, "INFRA")
    end
    local live = auth.server:policy_hash()
    if live ~= sha then steps.fail("auth server " .. auth.name .. " serving policy " .. sha, "serving " .. tostring(live), nil, "INFRA") end
  elseif auth.spec.config_path then
    local ok, err = fs.write(auth.spec.config_path, text, { mode = 420 })
    if not ok then steps.fail("policy written to " .. auth.spec.config_path, err, nil, "INFRA") end
    local back = fs.read(auth.spec.config_path)
    sha = sha256_hex(text)
    if not back or sha256_hex(back) ~= sha then steps.fail("policy file holds the new policy", "file differs after write", nil, "INFRA") end
    version = (self.policy_versions[auth.name].version or 0) + 1
  else
    steps.fail("a policy source for " .. auth.name, "external auth server without config_path cannot be changed", nil, "INFRA")
  end
  local prev = self.policy_versions[auth.name]
  self.policy_versions[auth.name] = { version = version, sha256 = sha, description = policy.description }
  self.policy_count = (self.policy_count or 0) + 1
  local file = string.format("policies/%03d-%s-v%d.json", self.policy_count, auth.name, version)
  self.evidence:write(file, text)
  -- The diff compares pretty-printed forms so a changed list entry is one line.
  local diff = linediff.unified(self.policy_texts[auth.name] or "", pretty,
    (prev and prev.description or "initial"), policy.description)
  self.policy_texts[auth.name] = pretty
  self.evidence:write(file:gsub("%.json$", ".diff"), diff)
  events.emit("policy", { auth = auth.name, version = version, sha256 = sha, policy = policy.description,
    previous = prev and prev.description, file = file })
  return version, sha
end

return M
