-- What /proc says about a process (Linux): enough to name it beyond its pid,
-- which the kernel reuses. A process is the same one when its pid, its start
-- time (clock ticks after boot, /proc/PID/stat field 22) and its command line
-- match. The command line is kept as a SHA-256: it can hold secrets.
local fs = require "kmsrun.fs"
local crypto = require "kmsrun.crypto"

local M = {}

--- {pid, state, ppid, pgrp, starttime} from /proc/PID/stat ("self" allowed), or nil.
function M.stat(pid)
  local stat = fs.read("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  -- "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
  local rest = stat:match("^.*%) (.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return { pid = tonumber(stat:match("^(%d+)")), state = f[1], ppid = tonumber(f[2]), pgrp = tonumber(f[3]),
    starttime = tonumber(f[20]) }
end

--- SHA-256 (hex) of the process's command line as /proc holds it, or nil.
function M.cmdline_sha256(pid)
  local cmdline = fs.read("/proc/" .. pid .. "/cmdline")
  return cmdline and crypto.hex(crypto.sha256(cmdline)) or nil
end

--- {pid, starttime, cmdline_sha256} of a process, for a ledger.
function M.identity(pid)
  local st = M.stat(pid)
  return { pid = st and st.pid or pid, starttime = st and st.starttime, cmdline_sha256 = M.cmdline_sha256(pid) }
end

return M
