-- Command-line entry point: called by the host with argv; returns the exit code.
local core = require "kmsrun.core"
local task = require "kmsrun.lib.task"
local exit_codes = require "kmsrun.run.exit_codes"

local VERSION = core.version

local function run_in_task(fn, ...)
  local t = task.spawn(fn, ...)
  t.on_done = function() core.stop() end
  core.run()
  if not t.done then
    local waiting = t:waiting()
    if waiting then
      -- core.stop() without the task finishing: a forced stop (second Ctrl-C).
      return exit_codes.INTERRUPTED
    end
    io.stderr:write("kmsrun: deadlock: the main task waits for something that can never happen\n")
    return exit_codes.USAGE
  end
  if not t.ok then
    local e = t.error
    if type(e) == "table" and e.usage then io.stderr:write("kmsrun: ", e.message, "\n")
    else io.stderr:write("kmsrun: ", tostring(t.traceback or e), "\n") end
    return exit_codes.USAGE
  end
  local code = t.results[1]
  return type(code) == "number" and code or 0
end

local load_target = require("kmsrun.targets.registry").load

local function show_runbook_help(spec, target)
  local h = spec.header
  print(spec.path .. (h.description and (": " .. h.description) or ""))
  if h.tags and #h.tags > 0 then print("tags: " .. table.concat(h.tags, ", ")) end
  local names = {}
  local decls = {}
  for n, v in pairs(h.vars or {}) do names[#names + 1] = n; decls[n] = v end
  for n, v in pairs(target and target.vars or {}) do
    if not decls[n] then names[#names + 1] = n; decls[n] = v end
  end
  table.sort(names)
  if #names > 0 then
    print("\nvariables (--var NAME=VALUE):")
    for _, n in ipairs(names) do
      local v = decls[n]
      -- A secret's default (a token taken from the environment) is never shown.
      local default = v.default ~= nil and v.default ~= "" and (v.secret and "[secret]" or tostring(v.default))
      print(string.format("  %-18s %s%s", n, v.help or "", v.required and " (required)" or
        (default and (" [default: " .. default .. "]") or "")))
    end
  end
  print("\ncases:")
  for _, c in ipairs(spec.cases) do print(string.format("  %d. %s", c.id, c.name)) end
end

local function run_runbook(opts)
  local runbook = require "kmsrun.run.runbook"
  local target, terr = load_target(opts.target)
  if not target then
    io.stderr:write("kmsrun: ", terr, "\n")
    return exit_codes.USAGE
  end
  require("kmsrun.run.host_access").flag = opts.host_access == true
  local spec, err = runbook.load(opts.runbook, { vars = opts.vars, target_vars = target.vars })
  if not spec then
    io.stderr:write(err, "\n")
    return exit_codes.USAGE
  end
  -- Secret defaults are tainted before anything is shown, --help included.
  local redact = require "kmsrun.report.redact"
  for _, decls in ipairs({ spec.header.vars or {}, target.vars or {} }) do
    for _, v in pairs(decls) do
      if v.secret and type(v.default) == "string" then redact.add(v.default) end
    end
  end
  if opts.help then show_runbook_help(spec, target) return exit_codes.OK end
  if opts.list then
    for _, c in ipairs(spec.cases) do print(string.format("%d. %s", c.id, c.name)) end
    return exit_codes.OK
  end
  local req = spec.header.requires and spec.header.requires.targets
  if req then
    local okt = false
    for _, t in ipairs(req) do if t == target.name then okt = true end end
    if not okt then
      io.stderr:write("kmsrun: ", spec.path, " does not support target ", target.name, " (requires: ", table.concat(req, ", "), ")\n")
      return exit_codes.USAGE
    end
  end
  local values, decls = spec.resolve_vars(opts.vars, target.vars)
  if not values then
    io.stderr:write("kmsrun: ", decls, "\n")
    return exit_codes.USAGE
  end
  -- A secret variable's value (--var, default or environment) is tainted: scrubbed
  -- from every sink, and the leak scan fails the run (exit 6) if it gets through.
  for name, d in pairs(decls) do
    if d.secret and type(values[name]) == "string" then redact.add(values[name]) end
  end
  if opts.events then
    local events = require "kmsrun.report.events"
    if opts.events == "-" then
      -- The line is encoded from scrubbed values (report/events.lua): written as is.
      events.set_sink(function(line)
        local ok, err = io.stdout:write_scrubbed(line)
        if ok then ok, err = io.stdout:flush() end
        return ok and true, err
      end)
      opts.quiet = true
    else
      local fs = require "kmsrun.fs"
      -- Never through a symbolic link (it would truncate and chmod its target); a
      -- regular file is replaced by a fresh owner-only one, a device appended to.
      local st = fs.stat(opts.events, { nofollow = true })
      if st and st.kind == "link" then
        io.stderr:write("kmsrun: --events ", opts.events, " is a symbolic link; not followed: give the file itself\n")
        return exit_codes.USAGE
      end
      local ok, werr
      if not st or st.kind == "file" then ok, werr = fs.write(opts.events, "", { mode = 384 })
      else ok, werr = fs.append(opts.events, "", { nofollow = true }) end
      if not ok then io.stderr:write("kmsrun: cannot write ", opts.events, ": ", tostring(werr), "\n") return exit_codes.USAGE end
      events.set_sink(function(line) return fs.append(opts.events, line, { nofollow = true }) end)
    end
  end
  local r = require("kmsrun.run.runner").new(spec, {
    version = VERSION, target = target, vars = values, var_decls = decls, out = opts.out,
    cases = opts.cases, tags = opts.tags, keep_going = opts.keep_going, verbose = opts.verbose, quiet = opts.quiet,
    console_stream = opts.events == "-" and io.stderr or nil,
    timeout = opts.timeout,
  })
  return r:execute()
end

return function(argv)
  -- Every byte written to the terminal passes the redaction boundary. `script`
  -- and `serve` keep their bytes (no control-character escaping): they speak
  -- their own formats.
  require("kmsrun.report.terminal").install({ raw = argv[1] == "script" or argv[1] == "serve" or argv[1] == "test" })
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local cmd = args[1]
  if cmd == "--version" then
    print("kmsrun " .. VERSION)
    return 0
  elseif cmd == "test" then
    table.remove(args, 1)
    return run_in_task(require("kmsrun.lib.testing").run, args)
  elseif cmd == "script" then
    -- kmsrun script FILE ARGS...: a plain Lua file run in a task, with `arg` set.
    local file = args[2]
    if not file then io.stderr:write("usage: kmsrun script FILE [ARGS...]\n") return 2 end
    local chunk, err = loadfile(file, "t")
    if not chunk then io.stderr:write(err, "\n") return 2 end
    _G.arg = { [0] = file, table.unpack(args, 3) }
    return run_in_task(function() return chunk(table.unpack(args, 3)) end)
  elseif cmd == "serve" then
    -- kmsrun serve NAME ARGS...: runs the emulator's serve module, which returns
    -- function(args) -> exit code, called inside a task.
    local name = args[2]
    if not name then
      io.stderr:write("usage: kmsrun serve auth|kms-sim [options]\n")
      return 2
    end
    local module = ({ auth = "kmsrun.emu.auth.serve", ["kms-sim"] = "kmsrun.emu.kms.serve" })[name]
    if not module then
      io.stderr:write("kmsrun serve: unknown service '", name, "' (services: auth, kms-sim)\n")
      return 2
    end
    local ok, serve = pcall(require, module)
    if not ok then
      io.stderr:write("kmsrun serve ", name, ": ", tostring(serve), "\n")
      return 2
    end
    return run_in_task(serve, { table.unpack(args, 3) })
  elseif cmd == "doc" or cmd == "check" or cmd == "plan" or cmd == "replay" or cmd == "cleanup" or cmd == "mutants" then
    local ok, sub = pcall(require, "kmsrun.cli.commands." .. cmd)
    if not ok then
      io.stderr:write("kmsrun ", cmd, ": ", tostring(sub), "\n")
      return 2
    end
    return run_in_task(sub, { table.unpack(args, 2) })
  end
  local cli = require "kmsrun.cli.options"
  local opts, err = cli.parse(args)
  if not opts then
    io.stderr:write("kmsrun: ", err, "\n", cli.usage)
    return exit_codes.USAGE
  end
  if opts.version then print("kmsrun " .. VERSION) return 0 end
  if not opts.runbook then
    if opts.help then io.stdout:write(cli.usage) return 0 end
    io.stderr:write(cli.usage)
    return exit_codes.USAGE
  end
  return run_in_task(run_runbook, opts)
end
