-- Command-line parsing for `kmsrun [options] RUNBOOK.lua`.
local argv = require "kmsrun.lib.argv"

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

--- Parses the options of a command other than a run (check, plan, mutants): like a
-- run, without the run-only ones (but those the command names in `takes`, a set of
-- option fields, e.g. mutants' { out = true }). Returns opts, or nil and the exit
-- code after saying why (--help prints usage and returns nil, 0).
function M.parse_for(command, args, usage, extra, takes)
  local opts, err = M.parse(args, extra)
  if not opts then
    io.stderr:write("kmsrun ", command, ": ", err, "\n", usage)
    return nil, 2
  end
  if opts.help then io.stdout:write(usage) return nil, 0 end
  for field, flag in pairs(RUN_ONLY) do
    if opts[field] and not (takes and takes[field]) then
      io.stderr:write("kmsrun ", command, ": ", flag, " does not apply to ", command, "\n")
      return nil, 2
    end
  end
  -- What the run would be granted, the analysis grants (and reports the rest).
  require("kmsrun.run.host_access").flag = opts.host_access == true
  return opts
end

local function name_value(v)
  local name, val = v:match("^([%a_][%w_]*)=(.*)$")
  if not name then return nil, "NAME=VALUE" end
  return { name, val }
end

local FLAGS = {
  ["--var"] = { "var_list", value = "NAME=VALUE", list = true, check = name_value },
  ["--target"] = { "target", value = "NAME" },
  ["--out"] = { "out", value = "DIR" },
  ["--case"] = { "cases", value = "SEL", list = true },
  ["--tag"] = { "tags", value = "TAG", list = true },
  ["--events"] = { "events", value = "FILE" },
  ["--timeout"] = { "timeout", value = "SECONDS", check = argv.seconds() },
  ["--keep-going"] = { "keep_going" },
  ["--host-access"] = { "host_access" },
  ["--list"] = { "list" },
  ["--verbose"] = { "verbose" }, ["-v"] = "--verbose",
  ["--quiet"] = { "quiet" }, ["-q"] = "--quiet",
  ["--help"] = { "help" }, ["-h"] = "--help",
  ["--version"] = { "version" },
}

--- Parses argv (a list); returns opts | nil, error message. extra: a command's own
-- flags beside the run's (lib/argv.lua's table form), e.g. check's --isolated.
function M.parse(args, extra)
  local flags = FLAGS
  if extra then
    flags = {}
    for k, v in pairs(FLAGS) do flags[k] = v end
    for k, v in pairs(extra) do flags[k] = v end
  end
  local o, err = argv.parse(args, flags, { defaults = { target = "sim" }, positional = "runbook",
    several = "only one runbook per run" })
  if not o then return nil, err end
  o.vars = {}
  for _, nv in ipairs(o.var_list) do o.vars[nv[1]] = nv[2] end
  o.var_list = nil
  return o
end

return M
