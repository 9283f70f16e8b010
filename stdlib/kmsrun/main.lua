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
  end
  io.stderr:write("usage: kmsrun [options] RUNBOOK.lua | kmsrun test FILE...\n")
  return 2
end
