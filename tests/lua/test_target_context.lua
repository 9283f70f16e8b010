-- run/target_context.lua: the one object a target's hooks get instead of the Run.
-- Its fields are the contract (docs/architecture.md, "A target"); any other read,
-- and any write, raises. The targets are driven here through a real context over a
-- stand-in Run, so a target that reached for a field of the Run would fail.
local T = require "kmsrun.lib.testing"
local H = dofile((os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/fakes/harness.lua")
local fs = require "kmsrun.fs"
local time = require "kmsrun.time"
local evidence = require "kmsrun.report.evidence"
local target_context = require "kmsrun.run.target_context"

-- The part of the runner's Run the context reads; a target sees none of it directly.
local function fake_run(vars, fields)
  local run = { vars = vars or {}, runbook = { kmss = {}, auths = {} }, undos = {}, notes = {}, progress = {} }
  run.console = { progress = function(_, msg) run.progress[#run.progress + 1] = msg end }
  function run:defer(description, fn, undo) self.undos[#self.undos + 1] = { description = description, fn = fn, undo = undo } end
  function run:note(msg) self.notes[#self.notes + 1] = msg end
  function run:time_left() return 42 end
  for k, v in pairs(fields or {}) do run[k] = v end
  return run
end

-- The defaults of a target's variables, with overrides.
local function vars_of(target, over)
  local v = {}
  for name, d in pairs(target.vars or {}) do v[name] = d.default end
  for k, x in pairs(over or {}) do v[k] = x end
  return v
end

local function undo_all(run)
  while #run.undos > 0 do table.remove(run.undos).fn() end
end

local function with_evidence(run)
  run.evidence = assert(evidence.open(H.tmpdir("target-context") .. "/out"))
  return run
end

T.test("the context is the contract: any other field, and any write, raises", function()
  local ctx = target_context.new(fake_run({ a = "1" }, { interrupted = "SIGINT", error = "x", selected_cases = {} }))
  for _, name in ipairs(target_context.FIELDS) do T.ok(ctx[name] ~= nil, name .. " is there") end
  T.eq(ctx.vars.a, "1")
  for _, name in ipairs { "interrupted", "error", "setup_case", "selected_cases", "vmm_session_state", "runbook",
    "console", "run", "target" } do
    local ok, err = pcall(function() return ctx[name] end)
    T.eq(ok, false, name .. " is not part of the context")
    T.contains(tostring(err), "the target context has no field '" .. name .. "'")
  end
  local ok, err = pcall(function() ctx.vmm_session_state = {} end)
  T.eq(ok, false)
  T.contains(tostring(err), "a target's own data goes in ctx.state")
  ok, err = pcall(function() ctx.vars.a = "2" end)
  T.eq(ok, false)
  T.contains(tostring(err), "ctx.vars is read-only")
  local names = {}
  for k in pairs(ctx.vars) do names[#names + 1] = k end
  T.eq(names, { "a" }, "the variables can be listed")
  ctx.state.session = "mine" -- the target's own table is its to fill
  T.eq(ctx.state.session, "mine")
  T.eq(target_context.new(fake_run()).state.session, nil, "one state per context")
end)

T.test("the methods reach the run: defer, note, progress, time_left, evidence", function()
  local run = fake_run()
  local ctx = target_context.new(run)
  ctx:defer("undo it", function() end, { kind = "dir", path = "/x" })
  T.eq(run.undos[1].description, "undo it")
  T.eq(run.undos[1].undo.path, "/x")
  ctx:note("a note")
  ctx:progress("booting")
  T.eq(run.notes, { "a note" })
  T.eq(run.progress, { "booting" })
  T.eq(ctx:time_left(), 42)
  with_evidence(run) -- opened after the context was made, as runner.lua does
  T.ok(ctx.evidence:mkdir("logs"))
  local path = ctx.evidence:write("logs/a.log", "text")
  T.eq(path, run.evidence:path("logs/a.log"))
  T.eq(fs.read(path), "text")
  ctx.evidence:json("vm/a.json", { x = 1 })
  T.contains(fs.read(run.evidence:path("vm/a.json")), '"x"')
  T.eq(ctx.evidence.archive, nil, "only path, mkdir, write and json")
end)

T.test("failed(): interrupted, a run error, the setup or a selected case not passed", function()
  local function failed(fields) return target_context.new(fake_run({}, fields)):failed() end
  T.eq(failed {}, false)
  T.eq(failed { interrupted = "SIGINT" }, true)
  T.eq(failed { error = "the run's deadline (--timeout) passed" }, true)
  T.eq(failed { setup_case = { status = "passed" } }, false)
  T.eq(failed { setup_case = { status = "failed" } }, true)
  T.eq(failed { setup_case = {} }, false, "a setup not run yet")
  T.eq(failed { selected_cases = { { status = "passed" }, { status = "skipped" }, {} } }, false)
  T.eq(failed { selected_cases = { { status = "passed" }, { status = "timeout" } } }, true)
  T.eq(failed { selected_cases = { { status = "error" } } }, true)
end)

T.test("the sim target deploys, reports and is removed through the context alone", function()
  local sim = require "kmsrun.targets.sim"
  local run = with_evidence(fake_run(vars_of(sim)))
  local h = { name = "kms-ctx", spec = {}, auth = { url = "http://127.0.0.1:9" } }
  run.runbook.kmss[1] = h
  local ctx = target_context.new(run)
  h.auth_url = sim.auth_url_for_kms(ctx, h.auth)
  T.eq(h.auth_url, "http://127.0.0.1:9")
  T.ok(pcall(sim.auth_mutations, ctx), "sim_mutation is read from ctx.vars")
  T.ok(sim.deploy(ctx, h))
  T.match(h.onboard_url, "^http://127%.0%.0%.1:%d+$")
  T.eq(sim.exited(ctx, h, true), nil)
  T.ok(#run.undos >= 2, "the work directory and the process are registered for undo")
  T.eq(type(sim.log_tail(ctx, h, 5)), "string")
  T.ok(sim.remove(ctx, h))
  T.ok(sim.exited(ctx, h) ~= nil, "the process is gone")
  undo_all(run)
  T.eq(fs.exists(h.workdir), false, "the work directory is removed")
end)

T.test("the local target's once-per-run state lives in ctx.state", function()
  local procs = require "kmsrun.targets.local.procs"
  local ctx = target_context.new(fake_run())
  local built = 0
  for _ = 1, 2 do T.eq(procs.once(ctx, "k", function() built = built + 1 return "v" end), "v") end
  T.eq(built, 1)
  local a, b = assert(procs.free_port(ctx)), assert(procs.free_port(ctx))
  T.ok(a ~= b, "a port is handed out once per run")
  T.ok(ctx.state.once.k and ctx.state.ports_given[a], "kept in the target's own state")
end)

T.test("the vmm target through the context: a boot failure keeps its logs and the VM is removed", function()
  local vmm = require "kmsrun.targets.vmm.target"
  local fake = H.fake_vmm({ "--fail-boot", "kms-one" })
  local run = with_evidence(fake_run(vars_of(vmm, { vmm_url = fake.url, kms_image = "example.test/dstack-kms:ci",
    vmm_boot_timeout = "60" })))
  local h = { name = "kms-one", spec = {}, auth = { url = "http://127.0.0.1:9" } }
  run.runbook.kmss[1] = h
  local ctx = target_context.new(run)
  h.auth_url = vmm.auth_url_for_kms(ctx, h.auth)
  local ok, err = vmm.deploy(ctx, h)
  T.eq(ok, nil)
  T.contains(tostring(err), "boot failed")
  T.ok(ctx.state.vmm_session.session, "the run's VMM session is the target's own state")
  T.contains(fs.read(run.evidence:path("logs/kms-one.log")) or "", "failed to start containers")
  T.ok(#run.progress > 0, "boot progress was shown")
  -- The removal (registered before CreateVm) keeps the logs of a failed run: it asks ctx:failed().
  h.log_wanted = nil
  fs.remove(run.evidence:path("logs/kms-one.log"))
  run.interrupted = "SIGINT"
  undo_all(run)
  T.contains(fs.read(run.evidence:path("logs/kms-one.log")) or "", "failed to start containers", "fetched again")
  local deadline = time.now() + 10
  while #fake:vms() > 0 and time.now() < deadline do time.sleep(0.05) end
  T.eq(#fake:vms(), 0, "the VM is removed")
  T.eq(h.vm.removed, true)
  fake:stop()
end, { timeout = 60 })

T.test("cleanup", function() H.cleanup() end)
