-- Helpers for the Lua tests of the vmm and local targets: start the fake VMM,
-- run kmsrun as a child on a runbook, inspect what it left behind.
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local http = require "kmsrun.http"
local json = require "kmsrun.lib.json"
local client = require "kmsrun.targets.vmm.client"

local H = {}

H.SRC = os.getenv("KMSRUN_SOURCE_DIR") or (fs.cwd() .. "/../..")
H.EXE = proc.exe()

local dirs = {}
local fakes = {}

function H.tmpdir(prefix)
  local d = assert(fs.tmpdir(prefix or "kmsrun-target-test"))
  dirs[#dirs + 1] = d
  return d
end

--- Stops every fake VMM still running (a failed test may not have) and removes the directories.
function H.cleanup()
  for _, f in ipairs(fakes) do f:stop() end
  fakes = {}
  for _, d in ipairs(dirs) do fs.remove(d) end
  dirs = {}
end

local function wait_for_line(path, pattern, p, seconds)
  local deadline = time.now() + (seconds or 15)
  while time.now() < deadline do
    local m = (fs.read(path) or ""):match(pattern)
    if m then return m end
    if p and not p:running() then break end
    time.sleep(0.02)
  end
  return nil
end

-- The fake VMM --------------------------------------------------------------------------

local Fake = {}
Fake.__index = Fake

--- Starts tests/fake_vmm.lua with args; creds = {token =} or {user =, password =}.
function H.fake_vmm(args, creds)
  local dir = H.tmpdir("fake-vmm-test")
  local argv = { H.EXE, "script", H.SRC .. "/tests/fake_vmm.lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = assert(proc.spawn(argv, { stdout = dir .. "/out", stderr = dir .. "/err" }))
  local url = wait_for_line(dir .. "/out", "listening on (http://[%d%.:]+)", p)
  if not url then
    p:kill(1)
    error("the fake VMM did not start: " .. tostring(fs.read(dir .. "/err")))
  end
  local f = setmetatable({ url = url, process = p, dir = dir, creds = creds or {},
    client = assert(client.new(url, creds or {})) }, Fake)
  fakes[#fakes + 1] = f
  return f
end

function Fake:vms()
  local res = assert(self.client:call("Status", {}))
  return res.vms
end

function Fake:processes()
  local headers = {}
  if self.creds.token then headers["Authorization"] = "Bearer " .. self.creds.token end
  if self.creds.user then
    headers["Authorization"] = "Basic " .. require("kmsrun.crypto").base64(self.creds.user .. ":" .. self.creds.password)
  end
  local res = assert(http.request(self.url .. "/fake/processes", { headers = headers }))
  return assert(json.decode(res.body)).processes
end

--- Pids of emulators still alive (checked by pid, not by the fake's word).
function Fake:alive_pids()
  local alive = {}
  for _, e in ipairs(self:processes()) do
    if proc.alive(e.pid) then alive[#alive + 1] = e.pid end
  end
  return alive
end

function Fake:stop()
  if self.process:running() then self.process:kill(3) end
end

-- Running kmsrun -----------------------------------------------------------------------

--- Writes a runbook into a temporary directory; returns its path.
function H.runbook(text)
  local path = H.tmpdir("runbook") .. "/rb.lua"
  assert(fs.write(path, text))
  return path
end

--- A runbook with one KMS that deploys, waits and checks GetAttestationInfo
-- (an error when opts.attestation == false, whose readiness probe is /health).
function H.one_kms_runbook(opts)
  local bare = opts and opts.attestation == false
  return H.runbook(string.format([[
runbook { description = "one KMS", requires = { targets = { "sim", "local", "vmm" } } }
local auth = auth_server("auth")
local k = kms("kms-one", { auth = auth, attestation = %s })
setup("deploy and wait", function()
  deploy(k)
  wait_ready(k)
end)
case("the onboard endpoint answers", function()
  local res = rpc(k, "Onboard.GetAttestationInfo")
  %s
end)
]], tostring(not bare), bare and 'expect_error(res, "Failed to get attestation: ")' or "expect_ok(res)"))
end

--- Runs kmsrun with args; returns {code =, output =, out =} (out: the output directory).
-- opts: env (table), timeout (seconds, default 60).
function H.kmsrun(args, opts)
  opts = opts or {}
  local dir = H.tmpdir("kmsrun-run")
  local out = dir .. "/out"
  local argv = { H.EXE, "--out", out }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = assert(proc.spawn(argv, { stdout = dir .. "/console", stderr = dir .. "/console", env = opts.env,
    cwd = opts.cwd }))
  local code, err = p:wait(opts.timeout or 60)
  if not code then
    p:kill(1)
    error("kmsrun did not finish: " .. tostring(err) .. "\n" .. tostring(fs.read(dir .. "/console")))
  end
  return { code = code, output = fs.read(dir .. "/console") or "", out = out }
end

--- Every file of a directory tree, concatenated (for "does X appear anywhere" checks).
function H.read_tree(dir)
  local parts = {}
  local function walk(d)
    for _, n in ipairs(fs.list(d) or {}) do
      local p = d .. "/" .. n
      local _, kind = fs.exists(p)
      if kind == "directory" then walk(p) else parts[#parts + 1] = fs.read(p) or "" end
    end
  end
  walk(dir)
  return table.concat(parts, "\n")
end

return H
