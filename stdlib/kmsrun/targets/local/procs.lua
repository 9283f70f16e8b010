-- What the local target's processes share: starting a user-provided binary with a
-- clear error, one-per-run setup, the run's work directory, log excerpts.
local fs = require "kmsrun.fs"
local proc = require "kmsrun.proc"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local tail = require("kmsrun.targets.registry").tail_file

local M = {}

function M.with_tail(msg, path)
  local t = tail(path, 12)
  return t ~= "" and (msg .. "; last log lines:\n" .. t) or msg
end

--- A binary given with a relative path is resolved against kmsrun's working directory
-- (the process itself runs elsewhere).
function M.resolve(bin)
  if bin:find("/", 1, true) and bin:sub(1, 1) ~= "/" then return fs.cwd() .. "/" .. bin end
  return bin
end

--- Spawns argv; a missing or non-executable binary becomes an error naming the variable to set.
function M.spawn(argv, opts, var, what)
  local p, err, code = proc.spawn(argv, opts)
  if p then return p end
  if code == "ENOENT" or code == "EACCES" then
    return nil, string.format("cannot run %s '%s': %s; give --var %s=/path/to/%s", what, argv[1], tostring(err), var, what)
  end
  return nil, string.format("cannot start %s '%s': %s", what, argv[1], tostring(err))
end

--- Runs build(ctx) once per run and key (in ctx.state), whichever caller comes first; the others wait
-- for its result.
function M.once(ctx, key, build)
  ctx.state.once = ctx.state.once or {}
  local state = ctx.state.once[key]
  if not state then
    state = { loading = true }
    ctx.state.once[key] = state
    local ok, v, err = pcall(build, ctx)
    state.loading = false
    if not ok then
      state.err = tostring(v)
      if task.is_cancelled(v) then error(v, 0) end
    elseif not v then
      state.err = err
    else
      state.value = v
    end
  end
  while state.loading do time.sleep(0.01) end
  if state.err then return nil, state.err end
  return state.value
end

--- The run's private work directory (removed at the end).
function M.workspace(ctx)
  return M.once(ctx, "work", function()
    local dir, err = fs.tmpdir("kmsrun-local")
    if not dir then return nil, "cannot create a work directory: " .. tostring(err) end
    ctx:defer("remove the local target's work directory", function() fs.remove(dir) end, { kind = "dir", path = dir })
    ctx.evidence:mkdir("logs") -- beneath the output directory: a planted link is refused
    return dir
  end)
end

--- A free loopback port not handed out before in this run. Bind-0-close-use leaves a
-- window: two processes started at once could be given one port, and the readiness
-- probe of one would then be answered by the other.
function M.free_port(ctx)
  ctx.state.ports_given = ctx.state.ports_given or {}
  for _ = 1, 20 do
    local port, err = require("kmsrun.targets.hostport").free()
    if not port then return nil, err end
    if not ctx.state.ports_given[port] then
      ctx.state.ports_given[port] = true
      return port
    end
  end
  return nil, "no free loopback port that this run has not used already"
end

--- Waits until ready() is true while p runs: true, or nil and "EXITED" / "TIMEOUT".
function M.await(p, ready, limit)
  local deadline = time.now() + limit
  while not ready() do
    if not p:running() then return nil, "EXITED" end
    if time.now() > deadline then return nil, "TIMEOUT" end
    time.sleep(0.02)
  end
  return true
end

return M
