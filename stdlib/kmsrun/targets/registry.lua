-- The deployment targets by name, and the helpers they share.
local M = {}

M.names = { "sim", "local", "vmm" }
-- vmm is a folder (the target, its VMM client and compose builder); the others are one file.
local modules = { sim = "kmsrun.targets.sim", ["local"] = "kmsrun.targets.local.target", vmm = "kmsrun.targets.vmm.target" }

--- The target module named `name`, or nil and a message naming the known ones.
function M.load(name)
  local module = modules[name]
  if not module then
    return nil, "unknown target '" .. name .. "' (targets: " .. table.concat(M.names, ", ") .. ")"
  end
  local ok, t = pcall(require, module)
  if not ok then return nil, tostring(t) end
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
