-- `kmsrun check RUNBOOK [--var N=V ...] [--target NAME] [--isolated]`: loads the
-- runbook without side effects and reports every mistake it finds, one
-- `file:line: message` per line, then a summary. Exit 0 clean, 2 mistakes
-- (or a command-line error).
local cli = require "kmsrun.cli.options"
local analyze = require "kmsrun.cli.check.analyze"
local exit_codes = require "kmsrun.run.exit_codes"

local USAGE = [[
usage: kmsrun check RUNBOOK.lua [--var NAME=VALUE ...] [--target NAME] [--isolated]
  Loads the runbook without side effects (nothing is deployed, started or
  called) and reports its mistakes: syntax errors, unknown names and variables,
  wrong argument types and option names, unknown RPC methods and fields,
  handles used before deploy / wait_ready / finish / capture_attestation,
  bad `needs`, duplicate names. The runbook's own helper modules (`require`d
  from next to it) are loaded and run for real against the dry DSL; host and
  stdlib modules (`kmsrun.*`) stay placeholders, so no host call is made.
  --isolated   also check each case as `--case N` would run it alone
exit codes: 0 no mistake found, 2 mistakes found or usage error
]]

return function(args)
  local opts, code = cli.parse_for("check", args, USAGE, { ["--isolated"] = { "isolated" } })
  if not opts then return code end
  if #opts.cases > 0 or #opts.tags > 0 then
    io.stderr:write("kmsrun check: checks every case; use `kmsrun plan --case` for a selection\n")
    return exit_codes.USAGE
  end
  if not opts.runbook then io.stderr:write(USAGE) return exit_codes.USAGE end

  local a, aerr = analyze.run(opts.runbook, { vars = opts.vars, target = opts.target, isolated = opts.isolated })
  if not a then
    io.stderr:write("kmsrun check: ", aerr, "\n")
    return exit_codes.USAGE
  end
  a.issues:write(io.stdout, opts.runbook)
  local helpers = a.ctx.helpers or {}
  if #helpers > 0 then
    -- Said, because it differs from the host modules: these ran for real.
    print(string.format("helper modules loaded and run for real against the dry DSL (host calls simulated): %s",
      table.concat(helpers, ", ")))
  end
  local n = a.issues:count()
  if n > 0 then
    print(string.format("%s: %d mistake%s found", opts.runbook, n, n == 1 and "" or "s"))
    return exit_codes.USAGE
  end
  print(string.format("%s: no mistakes found (%d cases, %d kms, %d auth servers, %d rpc calls checked on target %s)",
    opts.runbook, #a.spec.cases, #a.spec.kmss, #a.spec.auths, a.rpc_count or 0, a.target.name))
  return exit_codes.OK
end
