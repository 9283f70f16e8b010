-- Shared by the tests in tests/security and tests/faults: runs kmsrun as a child
-- on a runbook written to a fresh directory, and inspects what it left.
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"

local M = {}

M.exe = os.getenv("KMSRUN") or proc.exe()

--- A fresh work directory (removed by M.cleanup).
function M.workdir(name)
  local d = assert(fs.tmpdir("kmsrun-sec-" .. name))
  return d
end

--- Writes a runbook into dir; returns its path.
function M.runbook(dir, name, text)
  local path = dir .. "/" .. name .. ".lua"
  assert(fs.write(path, text, { mode = 420 }))
  return path
end

--- Starts kmsrun with args (a list); returns the process and the log path.
function M.start(dir, args, log)
  log = log or (dir .. "/log-" .. tostring(math.random(1e9)))
  local argv = { M.exe }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = assert(proc.spawn(argv, { stdout = log, stderr = log, cwd = dir,
    env = { KMSRUN_STDLIB = os.getenv("KMSRUN_STDLIB") or false } }))
  return p, log
end

--- Runs kmsrun to the end (at most `limit` s); returns code, output, seconds.
function M.run(dir, args, limit)
  local started = time.now()
  local p, log = M.start(dir, args)
  local code, err = p:wait(limit or 60)
  if not code then p:kill(1) error("kmsrun did not end within " .. tostring(limit or 60) .. " s: " .. tostring(err)) end
  return code, fs.read(log) or "", time.now() - started
end

--- Waits until the file at path contains pattern (at most 20 s).
function M.wait_for(path, pattern)
  for _ = 1, 400 do
    if (fs.read(path) or ""):find(pattern) then return true end
    time.sleep(0.05)
  end
  return false
end

--- Every path below dir (relative), links included, sorted.
function M.tree(dir)
  local out = {}
  local function walk(prefix)
    for _, n in ipairs(fs.list(dir .. prefix) or {}) do
      local rel = prefix .. "/" .. n
      out[#out + 1] = rel:sub(2)
      local st = fs.stat(dir .. rel, { nofollow = true })
      if st and st.kind == "directory" then walk(rel) end
    end
  end
  walk("")
  table.sort(out)
  return out
end

function M.cleanup(dir) fs.remove(dir) end

return M
