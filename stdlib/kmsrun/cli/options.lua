-- Command-line parsing for `kmsrun [options] RUNBOOK.lua`.
local M = {}

M.usage = [[
usage: kmsrun [options] RUNBOOK.lua
       kmsrun RUNBOOK.lua --help       show the runbook's description, variables and cases
       kmsrun check [--isolated] RUNBOOK.lua   load without side effects and report mistakes
                                       (--isolated: also as each case would run alone)
       kmsrun plan [--case SEL] RUNBOOK.lua    show what would run, start nothing
       kmsrun doc [NAME]               the runbook author reference
       kmsrun replay OUTDIR [--curl]   re-check a recorded run offline (--curl: its RPCs as curl commands)
       kmsrun mutants RUNBOOK.lua      every case under every emulator mutation switch (sim): which case
                                       catches which switch; exit 1 if a switch is caught by none
       kmsrun serve auth|kms-sim ...   run the auth-policy server or the KMS emulator
       kmsrun test FILE...             run Lua test files
       kmsrun script FILE [ARGS...]    run a plain Lua file (host modules available)

options:
  --var NAME=VALUE   set a runbook variable (repeatable)
  --target NAME      sim (default: kmsrun's KMS emulator), local, vmm
  --out DIR          output directory (default kmsrun-out/<runbook>-<time>)
  --case SEL         run only case number SEL, or the cases whose name contains SEL (repeatable)
  --tag TAG          run only the cases with this tag (repeatable)
  --keep-going       continue after a failing case (default: stop, the rest are skipped)
  --timeout SECONDS  deadline for the whole run (cases, steps and RPCs inherit it)
  --list             list the cases and exit
  --events FILE      write the NDJSON event stream to FILE ('-' for stdout)
  --host-access      let the runbook use os.execute, io, debug, any module (as if it
                     declared runbook{host_access = true})
  -v, --verbose      show every step as it starts
  -q, --quiet        show only failures and the summary
  --version          print the version
  -h, --help         this help

exit codes: 0 passed, 1 a case failed, 2 usage or runbook error, 3 infrastructure
error, 4 timeout, 5 cleanup failed, 6 secret leaked into the output, 130 interrupted
]]

-- Options of a run that mean nothing to a command that only analyses the runbook.
local RUN_ONLY = { out = "--out", events = "--events", keep_going = "--keep-going", list = "--list" }

--- Parses the options of an analysing command (check, plan): like a run, without
-- the run-only ones. Returns opts, or nil and the exit code after saying why
-- (--help prints usage and returns nil, 0).
function M.parse_for(command, args, usage)
  local opts, err = M.parse(args)
  if not opts then
    io.stderr:write("kmsrun ", command, ": ", err, "\n", usage)
    return nil, 2
  end
  if opts.help then io.stdout:write(usage) return nil, 0 end
  for field, flag in pairs(RUN_ONLY) do
    if opts[field] then
      io.stderr:write("kmsrun ", command, ": ", flag, " does not apply to ", command, "\n")
      return nil, 2
    end
  end
  -- What the run would be granted, the analysis grants (and reports the rest).
  require("kmsrun.run.host_access").flag = opts.host_access == true
  return opts
end

--- Parses argv (a list); returns opts | nil, error message.
function M.parse(args)
  local o = { vars = {}, cases = {}, tags = {}, target = "sim" }
  local i = 1
  local function value(flag)
    i = i + 1
    if args[i] == nil then return nil, flag .. " needs a value" end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if flag then a = flag end
    local function take()
      if inline then return inline end
      return value(a)
    end
    local v, err
    if a == "--var" then
      v, err = take()
      if not v then return nil, err end
      local name, val = v:match("^([%a_][%w_]*)=(.*)$")
      if not name then return nil, "--var expects NAME=VALUE, got '" .. v .. "'" end
      o.vars[name] = val
    elseif a == "--target" then
      o.target, err = take()
    elseif a == "--out" then
      o.out, err = take()
    elseif a == "--case" then
      v, err = take(); o.cases[#o.cases + 1] = v
    elseif a == "--tag" then
      v, err = take(); o.tags[#o.tags + 1] = v
    elseif a == "--events" then
      o.events, err = take()
    elseif a == "--timeout" then
      v, err = take()
      o.timeout = tonumber(v)
      if v and (not o.timeout or o.timeout <= 0) then return nil, "--timeout expects a number of seconds, got '" .. v .. "'" end
    elseif a == "--keep-going" then
      o.keep_going = true
    elseif a == "--host-access" then
      o.host_access = true
    elseif a == "--list" then
      o.list = true
    elseif a == "-v" or a == "--verbose" then
      o.verbose = true
    elseif a == "-q" or a == "--quiet" then
      o.quiet = true
    elseif a == "-h" or a == "--help" then
      o.help = true
    elseif a == "--version" then
      o.version = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    elseif o.runbook then
      return nil, "only one runbook per run (got '" .. o.runbook .. "' and '" .. a .. "')"
    else
      o.runbook = a
    end
    if err then return nil, err end
    if (a == "--target" or a == "--out" or a == "--case" or a == "--tag" or a == "--events" or a == "--timeout") and not inline and args[i] == nil then
      return nil, a .. " needs a value"
    end
    i = i + 1
  end
  return o
end

return M
