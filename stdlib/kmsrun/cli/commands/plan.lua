-- `kmsrun plan RUNBOOK [--var N=V ...] [--target NAME] [--case SEL] [--tag TAG]`:
-- a dry run. Shows the variables, what would be deployed, each selected case's
-- steps and what would be cleaned up, from the same analysis as `kmsrun check`
-- — starting nothing: no process, no socket, no output directory. Mistakes the
-- dry run finds follow the plan (on stderr); exit 0 clean, 2 mistakes.
local cli = require "kmsrun.cli.options"
local analyze = require "kmsrun.cli.check.analyze"
local plan_text = require "kmsrun.cli.check.plan_text"
local exit_codes = require "kmsrun.run.exit_codes"

local USAGE = [[
usage: kmsrun plan RUNBOOK.lua [--var NAME=VALUE ...] [--target NAME] [--case SEL ...] [--tag TAG ...]
  Shows what a run would do, starting nothing: the variables and their values
  (secret ones hidden), the auth servers and KMS instances it would start, the
  steps of setup, of each selected case (with the cases they need) and of
  teardown, and what the cleanup would undo.
exit codes: 0 plan shown, 2 mistakes found (listed after the plan) or usage error
]]

return function(args)
  local opts, code = cli.parse_for("plan", args, USAGE)
  if not opts then return code end
  if not opts.runbook then io.stderr:write(USAGE) return exit_codes.USAGE end

  local a, aerr = analyze.run(opts.runbook, { vars = opts.vars, target = opts.target, cases = opts.cases, tags = opts.tags })
  if not a then
    io.stderr:write("kmsrun plan: ", aerr, "\n")
    return exit_codes.USAGE
  end
  if a.recordings then io.stdout:write(plan_text.text(a)) end
  io.stdout:flush()
  local n = a.issues:count()
  if n > 0 then
    a.issues:write(io.stderr, opts.runbook)
    io.stderr:write(string.format("%s: %d mistake%s found\n", opts.runbook, n, n == 1 and "" or "s"))
    return exit_codes.USAGE
  end
  return exit_codes.OK
end
