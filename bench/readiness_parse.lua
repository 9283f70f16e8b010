-- For bench/run: prints "<onboard ms> <runtime ms>", the time from each listener of the
-- emulator opening (its "... mode: listening on" log line, millisecond timestamps) to the
-- end of the wait_ready step that covers it (the step_end event, 0.1 ms resolution).
-- Usage: kmsrun script bench/readiness_parse.lua EVENTS_FILE EMULATOR_LOG
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"

local function epoch(iso) -- "2026-11-25T12:01:05.686Z" (UTC)
  local y, mo, d, h, mi, s, ms = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from civil (Howard Hinnant)
  if mo <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) + tonumber(ms) / 1000
end

local opened = {}
for line in assert(fs.read(arg[2])):gmatch("[^\n]+") do
  local ts, mode = line:match("^(%S+) .- (%a+) mode: listening on ")
  if ts and not opened[mode] then opened[mode] = epoch(ts) end
end
local ready = {}
for line in assert(fs.read(arg[1])):gmatch("[^\n]+") do
  local ev = json.decode(line)
  if ev.event == "step_end" and ev.step:match("^wait_ready ") then
    local mode = ev.step:match("%((%a+)%)$")
    assert(ev.status == "passed", "wait_ready failed: " .. line)
    ready[mode] = ev.time
  end
end
assert(opened.onboard and opened.runtime and ready.onboard and ready.runtime, "missing listener lines or wait_ready steps")
print(string.format("%.1f %.1f", (ready.onboard - opened.onboard) * 1000, (ready.runtime - opened.runtime) * 1000))
