-- Command-line entry point: called by the host with argv; returns the exit code.
local core = require "kmsrun.core"
local task = require "kmsrun.task"

local VERSION = "0.1.0"

local function run_in_task(fn, ...)
  local code
  local t = task.spawn(fn, ...)
  t.on_done = function() core.stop() end
  core.run()
  if not t.done then
    io.stderr:write("kmsrun: deadlock: the main task waits for something that can never happen: ",
      tostring(t:waiting()), "\n")
    return 2
  end
  if not t.ok then
    io.stderr:write("kmsrun: ", tostring(t.traceback or t.error), "\n")
    return 2
  end
  code = t.results[1]
  return type(code) == "number" and code or 0
end

return function(argv)
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local cmd = args[1]
  if cmd == "--version" then
    print("kmsrun " .. VERSION)
    return 0
  elseif cmd == "test" then
    table.remove(args, 1)
    return run_in_task(require("kmsrun.testing").run, args)
  elseif cmd == "serve" then
    -- kmsrun serve NAME ARGS...: runs module kmsrun.serve.<name> (dashes become underscores),
    -- which returns function(args) -> exit code, called inside a task.
    local name = args[2]
    if not name then
      io.stderr:write("usage: kmsrun serve auth|kms-sim [options]\n")
      return 2
    end
    local ok, serve = pcall(require, "kmsrun.serve." .. name:gsub("-", "_"))
    if not ok then
      io.stderr:write("kmsrun serve: unknown service '", name, "'\n")
      return 2
    end
    return run_in_task(serve, { table.unpack(args, 3) })
  end
  io.stderr:write("usage: kmsrun [options] RUNBOOK.lua | kmsrun test FILE...\n")
  return 2
end
