-- The one command-line parser of every kmsrun command: a table of flags in, the
-- options table or `nil, message` out (the caller prints the message and its usage).
--
--   argv.parse(args, {
--     ["--out"] = { "out", value = "DIR" },           o.out = "DIR"
--     ["--case"] = { "cases", value = "SEL", list = true },   appended to o.cases
--     ["--quiet"] = { "quiet" }, ["-q"] = "--quiet",   a boolean; a string is an alias
--     ["--timeout"] = { "timeout", value = "SECONDS", check = positive_number },
--   }, { defaults = {...}, positional = "runbook", several = "only one runbook per run" })
--
-- `--flag VALUE` and `--flag=VALUE` are the same; `check(v)` returns the value to
-- store or nil and why; a bare "-" is an argument; anything else starting with "-"
-- that is not in the table is "unknown option X".
local M = {}

local function resolve(flags, name)
  local f = flags[name]
  if type(f) == "string" then return flags[f], f end
  return f, name
end

--- Parses args (a list of strings); returns the options table, or nil and a message.
function M.parse(args, flags, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts.defaults or {}) do o[k] = v end
  for _, f in pairs(flags) do
    if type(f) == "table" and f.list and o[f[1]] == nil then o[f[1]] = {} end
  end
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local f, canonical = resolve(flags, name)
    if f then
      local v = true
      if f.value then
        if inline then
          v = inline
        else
          i = i + 1
          v = args[i]
          if v == nil then return nil, canonical .. " needs a value (" .. f.value .. ")" end
        end
        if f.check then
          local checked, why = f.check(v)
          if checked == nil then return nil, canonical .. " expects " .. why .. ", got '" .. v .. "'" end
          v = checked
        end
      elseif inline then
        return nil, canonical .. " takes no value"
      end
      if f.list then
        local list = o[f[1]]
        list[#list + 1] = v
      else
        o[f[1]] = v
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    elseif not opts.positional then
      return nil, "unexpected argument '" .. a .. "'"
    elseif o[opts.positional] ~= nil then
      return nil, string.format("%s (got '%s' and '%s')", opts.several or "one argument only",
        o[opts.positional], a)
    else
      o[opts.positional] = a
    end
    i = i + 1
  end
  return o
end

--- A check for a number of seconds in (0, max] (max default: no limit); 0 allowed when min0.
function M.seconds(max, min0)
  return function(v)
    local n = tonumber(v)
    if n and (n > 0 or (min0 and n == 0)) and n <= (max or math.huge) then return n end
    return nil, max and string.format("seconds (%s..%g)", min0 and "0" or ">0", max) or "a number of seconds"
  end
end

return M
