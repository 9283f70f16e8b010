-- Files in cert_dir (kms-protocol.md 2.6): atomic writes (temp + fsync + rename), private
-- keys owner-only. One place, so the file conventions are stated once.
local fs = require "kmsrun.fs"

local M = {}

M.KEY_MODE = 384 -- 0600
M.FILE_MODE = 420 -- 0644

--- Writes data atomically; returns true or nil, "Failed to write <path>: <reason>".
function M.write(path, data, private)
  local ok, err = fs.write(path, data, { mode = private and M.KEY_MODE or M.FILE_MODE })
  if not ok then return nil, "Failed to write " .. path .. ": " .. tostring(err) end
  return true
end

function M.read(path)
  return fs.read(path)
end

function M.exists(path)
  return (fs.exists(path))
end

function M.mkdir(path)
  return fs.mkdir(path)
end

--- Appends a line-oriented record (test evidence); never fails the caller.
function M.append(path, data)
  local ok, err = fs.append(path, data, { mode = M.KEY_MODE })
  return ok, err
end

return M
