-- The one description of the runbook-author API. Each DSL function is defined
-- here with its signature, argument types, options, return value, errors and an
-- example; from these records come the argument checks at run time,
-- `kmsrun check`, `kmsrun doc`, docs/reference.md and the LuaLS stubs.
local M = {}

M.functions = {}  -- name -> record, in definition order in M.order
M.order = {}

-- Type names used in arg specs: "string", "number", "integer", "boolean", "table",
-- "function", "kms" (a KMS handle), "auth" (an auth server handle), "response",
-- "policy", "any"; a trailing "?" makes the argument optional; "a|b" allows either.
local function type_ok(value, spec)
  for alt in spec:gmatch("[^|]+") do
    local t = alt
    if t == "any" then return true end
    if t == "kms" or t == "auth" or t == "response" or t == "policy" then
      if type(value) == "table" and value.__kind == t then return true end
    elseif t == "integer" then
      if math.type(value) == "integer" then return true end
    elseif type(value) == t then
      return true
    end
  end
  return false
end

local function describe_type(value)
  if type(value) == "table" and value.__kind then return value.__kind .. " handle" end
  return type(value)
end

-- Raised for misuse of the DSL; the runner reports it at the runbook's file:line.
local UsageError = {}
UsageError.__index = UsageError
UsageError.__tostring = function(e) return e.message end
M.UsageError = UsageError

--- Raises a usage error located at the first runbook frame on the stack.
function M.usage_error(msg)
  local where = M.runbook_location()
  error(setmetatable({ message = (where and (where .. ": ") or "") .. msg, usage = true }, UsageError), 0)
end

M.runbook_sources = {} -- chunk names ("@path") of loaded runbooks

--- "file:line" of the innermost runbook frame calling into the DSL, or nil.
function M.runbook_location()
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if M.runbook_sources[info.source] and info.currentline > 0 then
      return info.short_src .. ":" .. info.currentline
    end
  end
  return nil
end

-- A spec ending with {variadic}, {options} takes "values..., [opts]": a trailing
-- plain table (not a handle) is the options table.
function M.split_trailing_options(rec, args)
  local specs = rec.args or {}
  local n = #specs
  if n >= 2 and specs[n - 1].variadic and specs[n].options then
    local last = args[args.n]
    if args.n > 0 and type(last) == "table" and last.__kind == nil then
      return table.pack(table.unpack(args, 1, args.n - 1)), last
    end
    return args, nil
  end
  return args, false
end

local check_options

local function check_args(rec, args)
  local values, opts = M.split_trailing_options(rec, args)
  if opts ~= false then
    local specs = rec.args
    if opts then check_options(rec, specs[#specs].options, opts) end
    local variadic_only = { name = rec.name, args = { table.unpack(specs, 1, #specs - 1) } }
    args, rec = values, variadic_only
  end
  for i, spec in ipairs(rec.args or {}) do
    local name, tspec = spec[1], spec[2]
    local v = args[i]
    local optional = tspec:sub(-1) == "?"
    local t = optional and tspec:sub(1, -2) or tspec
    if v == nil then
      if not optional and not spec.variadic then
        M.usage_error(string.format("%s: missing argument #%d (%s, %s expected)", rec.name, i, name, t))
      end
    elseif not type_ok(v, t) then
      M.usage_error(string.format("%s: argument #%d (%s) must be %s, got %s", rec.name, i, name, t, describe_type(v)))
    end
    if spec.variadic then
      for j = i + 1, args.n do
        if not type_ok(args[j], t) then
          M.usage_error(string.format("%s: argument #%d (%s) must be %s, got %s", rec.name, j, name, t, describe_type(args[j])))
        end
      end
    end
    if spec.options and type(v) == "table" and v.__kind == nil then check_options(rec, spec.options, v) end
  end
end

check_options = function(rec, known_set, opts)
  for k in pairs(opts) do
    if not known_set[k] then
      local best, best_d
      for known in pairs(known_set) do
        local d = M.distance(k, known)
        if d <= 2 and (not best_d or d < best_d) then best, best_d = known, d end
      end
      M.usage_error(string.format("%s: unknown option '%s'%s", rec.name, tostring(k),
        best and (" (did you mean '" .. best .. "'?)") or ""))
    end
  end
end

--- Validates an argument list (a table.pack) against a record's spec; raises a usage error.
M.check_args = check_args

--- Edit distance, for "did you mean".
function M.distance(a, b)
  a, b = tostring(a), tostring(b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The closest known name to `name` among `names` (distance <= 2), or nil.
function M.suggest(name, names)
  local best, best_d
  for _, n in ipairs(names) do
    local d = M.distance(name, n)
    if d <= 2 and (not best_d or d < best_d) then best, best_d = n, d end
  end
  return best
end

--- Defines an API function: the record documents it and the returned function checks its arguments.
function M.define(rec)
  assert(rec.name and rec.fn and rec.signature and rec.doc, "api.define: name, fn, signature and doc are required")
  rec.group = rec.group or "runbook"
  if not M.functions[rec.name] then M.order[#M.order + 1] = rec.name end
  M.functions[rec.name] = rec
  local fn = rec.fn
  rec.checked = function(...)
    check_args(rec, table.pack(...))
    return fn(...)
  end
  return rec.checked
end

return M
