-- run/policy_flips.lua: each set_policy gets a version, and the exact bytes
-- served and a diff against the previous policy are kept as evidence
-- (policies/NNN-name-vN.json and .diff). Uses the real auth server on port 0.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"
local evidence = require "kmsrun.report.evidence"
local events = require "kmsrun.report.events"
local policies = require "kmsrun.kms.policies"
local steps = require "kmsrun.dsl.steps"
local flips = require "kmsrun.run.policy_flips"

local base = assert(fs.tmpdir("kmsrun-test-flips"))
local n = 0
local OS_A = "0x" .. ("ab"):rep(32)

-- The fields of the runner's Run policy flips read; defer keeps the undos so
-- each test can run them (it stops the servers it started).
local function fake_run(auths)
  n = n + 1
  local run = {
    evidence = assert(evidence.open(base .. "/out" .. n)),
    runbook = { auths = auths or {} }, target = {}, policy_versions = {}, undos = {},
  }
  function run:defer(description, fn, undo) self.undos[#self.undos + 1] = { description = description, fn = fn, undo = undo } end
  return setmetatable(run, { __index = flips.methods, __close = function(r)
    for i = #r.undos, 1, -1 do r.undos[i].fn() end
  end })
end

-- deny_all() with one OS image allowed: a policy one line away from the baseline.
local function allow_os(os_image)
  local p = policies.deny_all()
  p.config.osImages = json.array { os_image }
  return policies.custom(p.config, "allow os " .. os_image:sub(1, 6))
end

local function read(run, rel) return fs.read(run.evidence:path(rel)) end

T.test("an emulated auth server starts on loopback with the initial policy at version 0", function()
  local auth = { name = "auth1", spec = {} }
  local run <close> = fake_run { auth }
  T.ok(run:start_auth_servers(), tostring(run.error))
  T.match(auth.url, "^http://127%.0%.0%.1:%d+$")
  T.ok(auth.server.port > 0)
  T.eq(run.undos[1].description, "stop auth server auth1")
  T.eq(run:policy_state(), { auth1 = { version = 0, sha256 = "", policy = "deny_all()" } })
end)

T.test("set_policy versions each flip and files the exact bytes served, hashing to the version's sha256", function()
  local auth = { name = "auth1", spec = {} }
  local run <close> = fake_run { auth }
  run:start_auth(auth)
  local evs = {}
  events.set_sink(function(line) evs[#evs + 1] = json.decode(line) return true end)
  local v1, sha1 = run:set_policy(auth, allow_os(OS_A))
  local v2, sha2 = run:set_policy(auth, policies.deny_all())
  events.set_sink(nil)
  T.eq({ v1, v2 }, { 1, 2 })
  local served1 = read(run, "policies/001-auth1-v1.json")
  T.ok(served1, "policies/001-auth1-v1.json written")
  T.eq(crypto.hex(crypto.sha256(served1)), sha1)
  T.contains(served1, OS_A)
  local served2 = read(run, "policies/002-auth1-v2.json")
  T.eq(served2, auth.server:policy_text(), "the bytes in force")
  T.eq(crypto.hex(crypto.sha256(served2)), sha2)
  T.eq(run:policy_state(), { auth1 = { version = 2, sha256 = sha2, policy = "deny_all()" } })
  T.eq(run.policy_count, 2)
  T.eq({ evs[1].event, evs[1].auth, evs[1].version, evs[1].sha256, evs[1].policy, evs[1].previous, evs[1].file },
    { "policy", "auth1", 1, sha1, "allow os 0xabab", "deny_all()", "policies/001-auth1-v1.json" })
  T.eq(evs[2].previous, "allow os 0xabab")
end)

T.test("each flip's diff is against the previous policy, labelled with both descriptions", function()
  local OS_B = "0x" .. ("cd"):rep(32)
  local auth = { name = "auth1", spec = {} }
  local run <close> = fake_run { auth }
  run:start_auth(auth)
  run:set_policy(auth, allow_os(OS_A))
  run:set_policy(auth, allow_os(OS_B))
  local d1 = assert(read(run, "policies/001-auth1-v1.diff"))
  T.match(d1, "^%-%-%- deny_all%(%)\n%+%+%+ allow os 0xabab\n")
  T.contains(d1, '+    "' .. OS_A .. '"')
  -- Pretty-printed, so a changed list entry is one line out and one line in.
  local d2 = assert(read(run, "policies/002-auth1-v2.diff"))
  local changed = {}
  for line in d2:gmatch("[^\n]+") do
    if line:match("^[-+]") and not line:match("^[-+][-+][-+] ") then changed[#changed + 1] = line end
  end
  table.sort(changed) -- (linediff's order of the two is its own concern)
  T.eq(changed, { '+    "' .. OS_B .. '"', '-    "' .. OS_A .. '"' })
  T.match(d2, "^%-%-%- allow os 0xabab\n%+%+%+ allow os 0xcdcd\n")
end)

T.test("the file counter runs across auth servers, each with its own version", function()
  local a, b = { name = "a", spec = {} }, { name = "b", spec = {} }
  local run <close> = fake_run { a, b }
  T.ok(run:start_auth_servers())
  run:set_policy(a, allow_os(OS_A))
  run:set_policy(b, allow_os(OS_A))
  run:set_policy(a, policies.deny_all())
  for _, f in ipairs { "policies/001-a-v1.json", "policies/002-b-v1.json", "policies/003-a-v2.json" } do
    T.ok(read(run, f), f .. " written")
  end
end)

T.test("an external auth server's config file is rewritten, versioned and restored by the undo", function()
  local dir = base .. "/ext" .. n
  assert(fs.mkdir(dir, { mode = 448 }))
  local path = dir .. "/auth.json"
  assert(fs.write(path, "original\n", { mode = 420 }))
  local auth = { name = "ext", spec = { url = "http://127.0.0.1:9/", config_path = path } }
  local run <close> = fake_run { auth }
  run:start_auth(auth)
  T.eq(auth.url, "http://127.0.0.1:9")
  T.eq(run.undos[1].undo, { kind = "file", path = path, content = "original\n" })
  local v, sha = run:set_policy(auth, allow_os(OS_A))
  T.eq(v, 1)
  T.eq(crypto.hex(crypto.sha256(fs.read(path))), sha)
  T.eq(fs.read(path), read(run, "policies/001-ext-v1.json"))
  T.eq((run:set_policy(auth, policies.deny_all())), 2)
  run.undos[1].fn()
  T.eq(fs.read(path), "original\n")
end)

T.test("an external server without a config file cannot be flipped: an INFRA failure", function()
  local auth = { name = "ext", spec = { url = "http://127.0.0.1:9" } }
  local run <close> = fake_run { auth }
  run:start_auth(auth)
  local ok, err = pcall(run.set_policy, run, auth, policies.deny_all())
  T.eq(ok, false)
  T.ok(steps.is_failure(err), tostring(err))
  T.eq(err.code, "INFRA")
  T.eq(run.policy_count, nil, "nothing filed")
end)

T.test("(cleanup of the test's directory)", function() T.ok(fs.remove(base)) end)
