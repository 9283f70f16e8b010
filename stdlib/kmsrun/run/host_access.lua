-- The runbook environment's one boundary: what a runbook can reach of the host.
-- A runbook gets the DSL and the safe standard libraries; whatever acts on the
-- host outside the run (start commands, open files anywhere, rewrite the Lua
-- state, load bytecode, load any module) needs host access, which the runbook
-- asks for (`runbook { host_access = true }`) or the command line grants
-- (`--host-access`). Without it such a use is a usage error naming the way to
-- ask, and `kmsrun check` reports it (HOST below drives both). `os.exit` is
-- never there: a run ends through its teardown, cleanup and report.
local api = require "kmsrun.dsl.api"

local M = {}

--- Granted from the command line (--host-access) for every runbook.
M.flag = false

--- Reached through host access: global -> true (every field) or {field = true}.
M.HOST = {
  io = true, debug = true, dofile = true, loadfile = true, collectgarbage = true,
  os = { execute = true, remove = true, rename = true, tmpname = true, setlocale = true, exit = true },
}

--- The text of the reference's section on the environment (kmsrun doc).
M.doc = [[A runbook runs in an environment of its own: the DSL below, `var`, and the safe standard libraries: `assert`, `error`, `ipairs`, `next`, `pairs`, `pcall`, `xpcall`, `print`, `select`, `tonumber`, `tostring`, `type`, `rawequal`, `rawget`, `rawlen`, `rawset`, `setmetatable`, `getmetatable`, `string`, `table`, `math`, `utf8`, `os.time`, `os.date`, `os.clock`, `os.difftime`, `os.getenv`, `debug.traceback`, `load` of text (its environment defaults to the runbook's), and `require` of the runbook's own helper modules (next to it) and `kmsrun.dsl`.

**Host access.** `os.execute`, `os.remove`, `os.rename`, `os.tmpname`, `os.setlocale`, `io` (`io.open`, `io.popen`, ...), `debug` (beyond `traceback`), `dofile`, `loadfile`, `collectgarbage`, `load` of bytecode and `require` of any other module (the host's `kmsrun.*` modules included) are unavailable unless the runbook declares `runbook { host_access = true }` or the run is given `--host-access`; using one without it is an error naming the way to ask, and `kmsrun check` reports every such use. With host access, `os.execute` runs its command through `/bin/sh -c` as a child of the run (a deadline or Ctrl-C stops it; it never outlives kmsrun); `io.popen` is Lua's own and blocks the run while it reads. Evidence is written with `save`, which keeps every name inside the output directory. `os.exit` is never available: a run ends through its teardown, its cleanups and its report.]]

--- Whether the runbook whose header is `header` has host access.
function M.granted(header)
  return M.flag == true or (type(header) == "table" and header.host_access == true)
end

--- Why `what` cannot be used (the same text at run time and from `kmsrun check`).
function M.message(what)
  if what == "os.exit" then
    return "os.exit is not available to runbooks: the run ends through its teardown, cleanups and report; "
      .. "raise an error() to stop a case"
  end
  return string.format("%s needs host access: a runbook gets the DSL and the safe standard libraries; "
    .. "declare runbook{host_access = true} or run with --host-access to use it", what)
end

local function denied(what) api.usage_error(M.message(what)) end
M.denied = denied

-- os.execute as a child of the run: waits without blocking the loop, so a
-- deadline or a signal cancels it, and the host kills it if kmsrun ends.
local function execute(cmd)
  local proc = require "kmsrun.proc"
  if cmd == nil then return true end
  local p, err = proc.spawn({ "/bin/sh", "-c", tostring(cmd) })
  if not p then return nil, "exit", 127, err end
  local ok, code, sig = pcall(p.wait, p)
  if not ok then p:kill(1) error(code, 0) end
  if sig then return nil, "signal", code - 128 end
  return code == 0 or nil, "exit", code
end

--- Adds the gated names to env. header(): the runbook's header (read at each use:
-- the runbook declares it at its top, after the environment was built).
function M.install(env, header)
  local function ok() return M.granted(header()) end
  local safe_os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime, getenv = os.getenv }
  local host_os = { execute = execute, remove = os.remove, rename = os.rename, tmpname = os.tmpname,
    setlocale = os.setlocale }
  env.os = setmetatable(safe_os, { __index = function(_, k)
    if k == "exit" then denied("os.exit") end
    if M.HOST.os[k] then
      if not ok() then denied("os." .. tostring(k)) end
      return host_os[k]
    end
    return nil
  end })
  local function gated_table(name, real, always)
    return setmetatable({}, { __index = function(_, k)
      if always and always[k] then return always[k] end
      if not ok() then denied(name .. "." .. tostring(k)) end
      return real[k]
    end })
  end
  env.io = gated_table("io", io)
  env.debug = gated_table("debug", debug, { traceback = debug.traceback })
  for _, name in ipairs { "dofile", "loadfile", "collectgarbage" } do
    local real = _G[name]
    env[name] = function(...)
      if not ok() then denied(name) end
      return real(...)
    end
  end
  env.load = function(chunk, name, mode, e)
    if mode ~= nil and mode ~= "t" and not ok() then denied("load of bytecode (mode '" .. tostring(mode) .. "')") end
    -- Without an environment, load would hand the chunk kmsrun's own globals.
    if e == nil then e = env end
    return load(chunk, name, ok() and mode or "t", e)
  end
end

--- require for names that are not the runbook's own modules: host access only.
function M.require(header)
  return function(name)
    if not M.granted(header()) then denied("require '" .. tostring(name) .. "'") end
    return require(name)
  end
end

return M
