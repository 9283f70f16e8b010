-- `kmsrun mutants RUNBOOK`: the runbook's mutation matrix on the sim target. The
-- runbook runs once as it is (every case must pass), then once under each of the
-- emulators' mutation switches (each re-creates one authorization bug); a switch
-- is caught by the cases that fail under it. Exit 1 when a switch is caught by
-- no case (the runbook cannot tell that check from its absence), or when the
-- runbook fails without any switch. A case that no switch fails is reported:
-- nothing shows that it can fail.
--
-- Each run is a child `kmsrun --keep-going` process with its own output
-- directory (kept, with mutants.json), `--jobs` of them at a time.
local cli = require "kmsrun.cli.options"
local exit_codes = require "kmsrun.run.exit_codes"
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local task = require "kmsrun.lib.task"
local time = require "kmsrun.time"
local json = require "kmsrun.lib.json"
local matrix = require "kmsrun.cli.mutants.matrix"

local USAGE = [[
usage: kmsrun mutants RUNBOOK.lua [--var NAME=VALUE ...] [--jobs N] [--switch NAME ...] [--out DIR]
                                  [--case SEL ...] [--timeout SECONDS]
  Runs every case of the runbook on the sim target without any mutation (all must
  pass), then under each emulator mutation switch, and prints which case catches
  (fails under) which switch.
  --jobs N       runs at a time (default 2)
  --switch NAME  only this switch (repeatable; default: every switch)
  --out DIR      where each run's output directory goes (default: a new temporary
                 directory); DIR/mutants.json holds the matrix
exit codes: 0 every switch caught, 1 a switch caught by no case or the runbook
fails unmutated, 2 usage error
]]

local function positive_integer(v)
  local n = math.tointeger(tonumber(v))
  if n and n >= 1 then return n end
  return nil, "a positive integer"
end

-- The run's options (lib/argv.lua through cli/options.lua) and mutants' own two.
local FLAGS = {
  ["--jobs"] = { "jobs", value = "N", check = positive_integer },
  ["--switch"] = { "only", value = "NAME", list = true },
}

-- One child run: returns {status =, exit_code =, cases = {id -> status}, out =, seconds =}.
-- alone: a case id to run by itself (with the cases it needs) instead of the selection.
local function run_one(opts, out, mutation, alone)
  local argv = { proc.exe(), "--keep-going", "-q", "--out", out }
  for name, value in pairs(opts.vars) do argv[#argv + 1] = "--var"; argv[#argv + 1] = name .. "=" .. value end
  if mutation then argv[#argv + 1] = "--var"; argv[#argv + 1] = "sim_mutation=" .. mutation end
  local cases = alone and { tostring(alone) } or opts.cases
  for _, c in ipairs(cases) do argv[#argv + 1] = "--case"; argv[#argv + 1] = c end
  for _, t in ipairs(opts.tags) do argv[#argv + 1] = "--tag"; argv[#argv + 1] = t end
  if opts.timeout then argv[#argv + 1] = "--timeout"; argv[#argv + 1] = tostring(opts.timeout) end
  argv[#argv + 1] = opts.runbook
  local started = time.now()
  local p, err = proc.spawn(argv, { stdout = out .. ".log", stderr = out .. ".log" })
  if not p then return { error = "cannot start kmsrun: " .. tostring(err) } end
  local code = p:wait()
  local r = { exit_code = code, cases = {}, out = out, seconds = time.now() - started }
  local text = fs.read(out .. "/report.json")
  local report = text and json.decode(text)
  if type(report) ~= "table" then
    r.error = "no report (exit " .. tostring(code) .. "); see " .. out .. ".log"
    return r
  end
  r.status = report.status
  r.case_list = {}
  for _, c in ipairs(report.cases or {}) do
    local id = math.tointeger(c.id) or c.id
    r.cases[id] = c.status
    r.case_list[#r.case_list + 1] = { id = id, name = c.name, status = c.status }
  end
  r.setup_status = report.setup and report.setup.status
  return r
end

-- Runs the jobs (functions) with at most n at a time, in order of the list.
local function pool(n, jobs)
  local next_job = 1
  local function worker()
    while next_job <= #jobs do
      local j = jobs[next_job]
      next_job = next_job + 1
      j()
    end
  end
  local workers = {}
  for _ = 1, math.min(n, #jobs) do workers[#workers + 1] = worker end
  task.parallel(table.unpack(workers))
end

return function(args)
  local opts, code = cli.parse_for("mutants", args, USAGE, FLAGS, { out = true })
  if not opts then return code end
  if opts.target ~= "sim" then
    io.stderr:write("kmsrun mutants: mutation switches exist on the sim target only (got --target ", opts.target, ")\n", USAGE)
    return exit_codes.USAGE
  end
  if not opts.runbook then io.stderr:write(USAGE) return exit_codes.USAGE end
  opts.jobs = opts.jobs or 2
  local switches, serr = matrix.switches(opts.only)
  if not switches then io.stderr:write("kmsrun mutants: ", serr, "\n") return exit_codes.USAGE end

  local dir = opts.out
  if dir then
    local ok, merr = fs.mkdir(dir)
    if not ok and not fs.exists(dir) then io.stderr:write("kmsrun mutants: cannot create ", dir, ": ", tostring(merr), "\n") return exit_codes.USAGE end
  else
    local err
    dir, err = fs.tmpdir("kmsrun-mutants")
    if not dir then io.stderr:write("kmsrun mutants: ", tostring(err), "\n") return exit_codes.USAGE end
  end

  -- The cases' needs, from the declarations (loading a runbook has no side effects).
  local spec, lerr = require("kmsrun.run.runbook").load(opts.runbook,
    { vars = opts.vars, target_vars = require("kmsrun.targets.registry").load("sim").vars })
  if not spec then io.stderr:write(tostring(lerr), "\n") return exit_codes.USAGE end
  local ids, needs = {}, {}
  for _, c in ipairs(spec.cases) do ids[c.name] = c.id end
  for _, c in ipairs(spec.cases) do
    needs[c.id] = {}
    for _, n in ipairs(c.needs) do needs[c.id][#needs[c.id] + 1] = ids[n] end
  end

  local started = time.now()
  local results = {}
  local jobs = { function() results.baseline = run_one(opts, dir .. "/baseline", nil) end }
  for _, s in ipairs(switches) do
    jobs[#jobs + 1] = function() results[s.name] = run_one(opts, dir .. "/" .. s.name, s.name) end
  end
  pool(opts.jobs, jobs)

  local m = matrix.build(results, switches, needs)
  -- A case that failed after an earlier one did may have failed from the state it left:
  -- run it alone under the same switch to tell a catch from a consequence.
  local settle = {}
  for _, row in ipairs(m.rows) do
    for _, id in ipairs(row.unsettled) do
      local name = row.switch.name
      settle[#settle + 1] = function()
        matrix.settle(m, row, id, run_one(opts, string.format("%s/%s-case%d", dir, name, id), name, id))
      end
    end
  end
  pool(opts.jobs, settle)
  matrix.finish(m)
  jobs = #jobs + #settle
  io.stdout:write(matrix.render(m))
  print(string.format("%d runs in %.1f s (%d at a time); outputs: %s", jobs, time.now() - started, opts.jobs, dir))
  fs.write(dir .. "/mutants.json", json.encode(matrix.to_json(m), { pretty = true }) .. "\n")
  return m.ok and exit_codes.OK or exit_codes.FAILED
end
