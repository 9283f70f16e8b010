-- Helpers for tests/security: run kmsrun as a separate process with its stdout and
-- stderr captured, and read back every byte it wrote (files, archive entries).
local proc = require "kmsrun.proc"
local fs = require "kmsrun.fs"
local archive = require "kmsrun.archive"

local M = {}

M.here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
if M.here:sub(1, 1) ~= "/" then M.here = fs.cwd() .. "/" .. M.here end

--- A fresh private directory, removed by the caller (M.cleanup).
function M.tmpdir()
  return assert(fs.tmpdir("kmsrun-sec"))
end

--- Runs `kmsrun ARGS...` in dir; returns {code, stdout, stderr}. opts.env, opts.timeout.
function M.kmsrun(dir, args, opts)
  opts = opts or {}
  local n = (M.n or 0) + 1
  M.n = n
  local out, err = dir .. "/stdout." .. n, dir .. "/stderr." .. n
  local argv = { proc.exe() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p <close> = assert(proc.spawn(argv, { stdout = out, stderr = err, cwd = opts.cwd or dir, env = opts.env }))
  local code, sig = p:wait(opts.timeout or 120)
  if code == nil then p:kill() end
  return { code = code, signal = sig, stdout = fs.read(out) or "", stderr = fs.read(err) or "" }
end

--- Every file below dir as {rel = content}; archive (.tar.gz) entries as "rel!name".
function M.contents(dir)
  local all = {}
  local function walk(prefix)
    for _, name in ipairs(fs.list(prefix == "" and dir or (dir .. "/" .. prefix)) or {}) do
      local rel = prefix == "" and name or (prefix .. "/" .. name)
      local _, kind = fs.exists(dir .. "/" .. rel)
      if kind == "directory" then
        walk(rel)
      else
        all[rel] = fs.read(dir .. "/" .. rel) or ""
        if rel:match("%.tar%.gz$") then
          for _, e in ipairs(archive.list(dir .. "/" .. rel) or {}) do
            all[rel .. "!" .. e.name] = archive.read(dir .. "/" .. rel, e.name) or ""
          end
        end
      end
    end
  end
  walk("")
  return all
end

--- The first (sink, form name) where any form occurs in any of the texts, or nil.
-- texts: {sink = text}; forms: {name = text}.
function M.find_any(texts, forms)
  for sink, text in pairs(texts) do
    for name, form in pairs(forms) do
      if text:find(form, 1, true) then return sink .. ": " .. name end
    end
  end
  return nil
end

return M
