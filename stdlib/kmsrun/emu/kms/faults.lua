-- Test-only switches of the emulator.
-- Mutations re-create a specific authorization bug (a check the real KMS performs is
-- skipped), so a test suite can prove it notices. Faults break the service's behaviour
-- (late listen, slow/crashing/erroring methods) for harness robustness tests.
local M = {}

-- The switch names and descriptions live in the emulators' one registry (emu/mutations.lua).
local registry = require "kmsrun.emu.mutations"

M.MUTATIONS = registry.descriptions("kms")

--- Validates mutation names (a list, or a comma-separated string). Returns a set or nil, error.
function M.mutations(list)
  return registry.set(list, "kms")
end

-- "KMS.GetTempCaCert" and "GetTempCaCert" name the same method.
local function bare(method) return (method:gsub("^%a+%.", "")) end

--- Parses fault specs ("listen-delay=S", "slow=METHOD:S", "crash=METHOD",
-- "status500=METHOD", "badjson=METHOD"). Returns a fault table or nil, error.
function M.faults(specs)
  local f = { listen_delay = 0, slow = {}, crash = {}, status500 = {}, badjson = {} }
  for _, spec in ipairs(specs or {}) do
    local kind, arg = spec:match("^([%w%-]+)=(.+)$")
    if kind == "listen-delay" then
      local s = tonumber(arg)
      if not s or s < 0 then return nil, "fault listen-delay needs SECONDS >= 0, got '" .. arg .. "'" end
      f.listen_delay = s
    elseif kind == "slow" then
      local m, s = arg:match("^([%w%.]+):([%d%.]+)$")
      if not m or not tonumber(s) then return nil, "fault slow needs METHOD:SECONDS, got '" .. arg .. "'" end
      f.slow[bare(m)] = tonumber(s)
    elseif kind == "crash" or kind == "status500" or kind == "badjson" then
      if not arg:match("^[%w%.]+$") then return nil, "fault " .. kind .. " needs a METHOD, got '" .. arg .. "'" end
      f[kind][bare(arg)] = true
    else
      return nil, "unknown fault '" .. spec .. "' (listen-delay=S, slow=METHOD:S, crash=METHOD, status500=METHOD, badjson=METHOD)"
    end
  end
  return f
end

function M.any(f)
  return f.listen_delay > 0 or next(f.slow) or next(f.crash) or next(f.status500) or next(f.badjson)
end

return M
