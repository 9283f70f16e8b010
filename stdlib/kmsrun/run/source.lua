-- Reading a runbook's text, for `kmsrun RUNBOOK`, `check` and `plan` alike: what is
-- not a runbook file is refused with the reason (a directory; a FIFO that would
-- block the read; a device such as /dev/zero that would grow memory without
-- bound, or /dev/null that would be an empty pass), the size is bounded, and the
-- two harmless things editors and Unix habits add are accepted: a UTF-8 byte order
-- mark, and a `#!` first line (as `lua FILE` accepts it; line numbers kept).
local fs = require "kmsrun.fs"

local M = {}

--- The largest runbook read (bytes); a runbook is code, not data.
M.MAX_BYTES = 4 * 1024 * 1024

--- The runbook's text | nil, message.
function M.read(path)
  local st, err = fs.stat(path)
  if not st then return nil, "cannot open runbook: " .. tostring(err) end
  if st.kind == "directory" then return nil, "cannot open runbook: " .. path .. " is a directory, not a runbook file" end
  if st.kind ~= "file" then
    return nil, "cannot open runbook: " .. path .. " is not a regular file (a device, FIFO or socket): give the runbook's .lua file"
  end
  if st.size > M.MAX_BYTES then
    return nil, string.format("cannot open runbook: %s is %d bytes, more than the %d a runbook may have", path, st.size, M.MAX_BYTES)
  end
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "cannot open runbook: " .. tostring(ferr) end
  -- Bounded even if the file grows between stat and read.
  local text = f:read(M.MAX_BYTES + 1) or ""
  f:close()
  if #text > M.MAX_BYTES then
    return nil, string.format("cannot open runbook: %s is more than %d bytes", path, M.MAX_BYTES)
  end
  if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end
  if text:sub(1, 2) == "#!" then text = "--" .. text end
  return text
end

return M
