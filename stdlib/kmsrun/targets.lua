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

--- The last n (default 10) non-empty lines of a text: the log excerpt targets
-- attach to failures.
function M.tail(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 10) + 1))
end

--- The same for a file ("" if it cannot be read).
function M.tail_file(path, n)
  return M.tail(require("kmsrun.fs").read(path), n)
end

return M
