-- Hand-built policies are checked against auth-simple's config schema before
-- they are served. auth-simple replaces a config that fails its schema by the
-- defaults (deny everything) and drops keys it does not know, both silently: a
-- policy with a typo'd key, or a `{description = ..., config = ...}` wrapper
-- served verbatim, would deny everything with no warning (issue 13).
local auth_policy = require "kmsrun.emu.auth.policy"

local M = {}

-- The keys auth-simple reads, by where they sit (emu/auth/policy.lua M.CONFIG).
local function keys_of(schema)
  local list = {}
  for _, f in ipairs(schema.fields) do list[#list + 1] = f[1] end
  return list
end

local function unknown_keys(value, schema, where, out)
  if type(value) ~= "table" or schema.kind ~= "object" then return end
  local known = {}
  for _, f in ipairs(schema.fields) do known[f[1]] = f[2] end
  for k, v in pairs(value) do
    if type(k) == "string" and k:sub(1, 2) ~= "__" then
      local sub = known[k]
      if not sub then
        out[#out + 1] = string.format("%s'%s' is not an auth-simple key (auth-simple ignores it; keys: %s)",
          where, k, table.concat(keys_of(schema), ", "))
      elseif sub.kind == "object" then
        unknown_keys(v, sub, where .. k .. ".", out)
      elseif sub.kind == "record" and type(v) == "table" then
        for name, entry in pairs(v) do unknown_keys(entry, sub.value, where .. k .. "." .. tostring(name) .. ".", out) end
      end
    end
  end
end

--- Checks a hand-built auth-simple config. Returns true, or nil and a message
-- that says what is wrong and what auth-simple would do with it.
function M.check(config)
  if type(config) ~= "table" then return nil, "a policy config must be a table, got " .. type(config) end
  if config.config ~= nil and (config.description ~= nil or config.name ~= nil) then
    return nil, "this looks like a {description, config} pair: auth-simple would get it verbatim and deny "
      .. "everything; pass the config itself, or name it with policy(name, config)"
  end
  local _, err = auth_policy.validate(config)
  if err then
    return nil, "not a valid auth-simple config (" .. err .. "): auth-simple would replace it by its defaults and deny everything"
  end
  local unknown = {}
  unknown_keys(config, auth_policy.CONFIG, "", unknown)
  if #unknown > 0 then
    table.sort(unknown)
    return nil, table.concat(unknown, "; ")
  end
  return true
end

return M
