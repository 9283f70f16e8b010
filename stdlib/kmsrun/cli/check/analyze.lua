-- The analysis behind `kmsrun check` and `kmsrun plan`: compile, read the source
-- (static pass), load the declarations, resolve variables, check the cases'
-- needs, then walk setup, the cases and teardown against the dry DSL.
-- Everything it runs is either a declaration (no side effects by design) or a
-- dry action, so analysing a runbook starts nothing.
local api = require "kmsrun.dsl.api"
local issues_mod = require "kmsrun.cli.check.issues"
local env_mod = require "kmsrun.cli.check.env"
local static = require "kmsrun.cli.check.static"
local vars_mod = require "kmsrun.cli.check.vars"
local cases_mod = require "kmsrun.run.cases"
local simulate = require "kmsrun.cli.check.simulate"
local lexer = require "kmsrun.cli.check.lexer"

local M = {}

local load_target = require("kmsrun.targets.registry").load
local source = require "kmsrun.run.source"

-- The line declaring variable `name` in the header: the first `name =` from the
-- runbook{} call on (the header is a table constructor, not a statement list).
local function var_line(text, from, name)
  for _, t in ipairs(lexer.tokens(text)) do
    if t.line >= (from or 1) and t.t == "name" and t.v == name then return t.line end
  end
  return from
end

local function check_header(ctx, a)
  local h = ctx.spec.header or {}
  local req = type(h.requires) == "table" and h.requires.targets
  if type(req) == "table" then
    local ok = false
    for _, t in ipairs(req) do if t == a.target.name then ok = true end end
    if not ok then
      ctx.issues:add(ctx.header_line, string.format("runbook: does not support target %s (requires: %s)",
        a.target.name, table.concat(req, ", ")))
    end
  end
  for _, name in ipairs(a.vars.missing) do
    local decl = a.vars.decls[name]
    ctx.issues:add(var_line(ctx.text, ctx.header_line, name), string.format(
      "variable '%s' is required: give --var %s=VALUE%s", name, name, decl.help and (" (" .. decl.help .. ")") or ""))
  end
end

-- A KMS nothing deploys and nothing uses is most likely a forgotten deploy.
local function check_unused(ctx)
  local deployed = {}
  for _, h in ipairs(ctx.world.deployed) do deployed[h] = true end
  for _, h in ipairs(ctx.spec.kmss) do
    if not deployed[h] and not ctx.world.used[h] then
      ctx.issues:add(ctx.issues:line_of(h.declared_at),
        string.format("kms %s is declared but never deployed (deploy it in setup, or remove it)", h.name))
    end
  end
end

-- Each case as `--case N` would run it alone (with its needs): mistakes that a
-- full run hides, such as a case relying on an earlier one it does not need.
local function check_isolated(ctx)
  local main = ctx.issues
  local have = {}
  for _, i in ipairs(main.list) do have[(i.line or "?") .. ":" .. i.message] = true end
  for _, c in ipairs(ctx.spec.cases) do
    local alone = issues_mod.new(main.short_src)
    ctx.issues = alone
    simulate.run(ctx, cases_mod.select(ctx.spec.cases, { tostring(c.id) }, {}))
    ctx.issues = main
    for _, i in ipairs(alone:sorted()) do
      if not have[(i.line or "?") .. ":" .. i.message] then
        main:add(i.line, string.format("%s (when case %d runs alone: add what it relies on to its needs)", i.message, c.id))
      end
    end
  end
end

--- Analyses the runbook at path. opts: vars (overrides), target (name), cases,
-- tags (selection; all cases when empty), isolated (also each case alone).
-- Returns the analysis {issues, spec, target, vars, recordings, refs, world, ...}
-- or nil, message for a command-line mistake (unknown target, --var or --case).
function M.run(path, opts)
  local text, ferr = source.read(path)
  if not text then return nil, ferr end
  local chunkname = "@" .. path
  local short_src = debug.getinfo(load("return", chunkname), "S").short_src
  local ctx = { path = path, text = text, secrets = {}, phase = "load", var_decls = {}, var_values = {},
    var_missing = {}, suggestions = {}, load_actions = {} }
  ctx.issues = issues_mod.new(short_src)
  local target, terr = load_target(opts.target or "sim")
  if not target then return nil, terr end
  local a = { ctx = ctx, issues = ctx.issues, target = target, path = path }

  -- var is readable once the header declares it, as at run time (runbook.lua).
  ctx.on_header = function()
    local h = ctx.spec.header or {}
    local v = vars_mod.resolve(type(h.vars) == "table" and h.vars or {}, target, opts.vars)
    if not v then return end -- an unknown --var: reported after loading
    ctx.var_decls, ctx.var_values, ctx.vars_at_load = v.decls, v.values, true
    for _, name in ipairs(v.missing) do ctx.var_missing[name] = true end
  end
  local env = env_mod.new(ctx)
  a.spec = ctx.spec
  local chunk, err = load(text, chunkname, "t", env)
  if not chunk then
    ctx.issues:add_located(err)
    a.syntax_error = true
    return a
  end
  api.runbook_sources[chunkname] = true

  local refs, serr = static.references(text)
  if not refs then ctx.issues:add(nil, "static analysis failed: " .. tostring(serr)) refs = {} end
  a.refs = refs
  static.names(ctx.issues, refs, ctx.known, ctx.suggestions)

  local ok, lerr = xpcall(chunk, function(e)
    if type(e) == "table" and e.usage then return e end
    return { location = api.runbook_location(), message = tostring(e) }
  end)
  if not ok then
    if lerr.usage then ctx.issues:add_located(lerr.message)
    else
      local _, msg = ctx.issues:split(lerr.message)
      ctx.issues:add_at(lerr.location, "error while loading: " .. msg)
    end
    a.load_error = true
  end
  ctx.phase = "run"

  local header = ctx.spec.header or {}
  local v, verr = vars_mod.resolve(type(header.vars) == "table" and header.vars or {}, target, opts.vars)
  if not v then return nil, verr end
  a.vars = v
  ctx.var_decls, ctx.var_values = v.decls, v.values
  for _, name in ipairs(v.missing) do ctx.var_missing[name] = true end
  for name, decl in pairs(v.decls) do
    if decl.secret and type(v.values[name]) == "string" then ctx.secrets[v.values[name]] = "[secret var." .. name .. "]" end
  end
  check_header(ctx, a)
  static.vars(ctx.issues, refs, v.decls)
  static.host_access(ctx.issues, refs, require("kmsrun.run.host_access").granted(ctx.spec.header))
  a.var_lines = static.var_lines(refs)
  cases_mod.check_needs(ctx.issues, ctx.spec.cases)

  local selected, cerr = cases_mod.select(ctx.spec.cases, opts.cases or {}, opts.tags or {})
  if not selected then return nil, cerr end
  a.selected = selected
  if a.load_error then return a end
  a.recordings = simulate.run(ctx, selected)
  a.world = ctx.world
  a.deployed = { table.unpack(ctx.world.deployed) }
  a.rpc_count = ctx.world.rpc_count
  if #selected == #ctx.spec.cases then check_unused(ctx) end
  if opts.isolated then check_isolated(ctx) end
  return a
end

return M
