-- The deployment targets (targets/<name>.lua), by name.
local M = {}

M.names = { "sim", "local", "vmm" }

--- The target module named `name`, or nil and a message naming the known ones.
function M.load(name)
  if not name:match("^[%w_]+$") then return nil, "unknown target '" .. name .. "'" end
  local ok, t = pcall(require, "kmsrun.targets." .. name)
  if not ok then
    if tostring(t):find("module 'kmsrun.targets." .. name .. "' not found", 1, true) then
      return nil, "unknown target '" .. name .. "' (targets: " .. table.concat(M.names, ", ") .. ")"
    end
    return nil, tostring(t)
  end
  return t
end

return M
