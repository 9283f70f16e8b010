-- The output directory of a run: every file written through here is scrubbed
-- of secrets, owner-only, and written atomically (or appended, for streams).
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local archive = require "kmsrun.archive"

local Evidence = {}
Evidence.__index = Evidence

local M = {}

--- Creates (mkdir -p, 0700) the output directory.
function M.open(dir)
  local ok, err, code = fs.mkdir(dir, { mode = 448 })
  if not ok then return nil, err, code end
  -- A directory that exists but cannot be written (read-only, full) is said now,
  -- with its cause, not as the failures of everything that would write there.
  local probe = dir .. "/.kmsrun-write-probe"
  ok, err, code = fs.write(probe, "kmsrun", { mode = 384 })
  fs.remove(probe)
  if not ok then return nil, "cannot write in " .. dir .. ": " .. tostring(err), code end
  return setmetatable({ dir = dir, files = {} }, Evidence)
end

function Evidence:path(rel)
  return self.dir .. "/" .. rel
end

local function parent(path)
  return path:match("^(.*)/[^/]*$")
end

--- Creates a subdirectory (owner-only).
function Evidence:mkdir(rel)
  return fs.mkdir(self:path(rel), { mode = 448 })
end

--- Writes rel (relative to the output directory) atomically, scrubbed as text;
-- opts.scrubbed: data was encoded from values already scrubbed (redact.value), so
-- it is written as is (scrubbing encoded text could cut its syntax).
function Evidence:write(rel, data, opts)
  local path = self:path(rel)
  local dir = parent(path)
  if dir then fs.mkdir(dir, { mode = 448 }) end
  if not (opts and opts.scrubbed) then data = redact.scrub(data) end
  local ok, err, code = fs.write(path, data, { mode = 384 })
  -- files[rel] says "written by this run, as last asked": the console claims no other.
  if not ok then self.files[rel] = nil return nil, err, code end
  self.files[rel] = true
  return path
end

--- Writes a value as pretty JSON.
function Evidence:json(rel, value)
  return self:write(rel, json.encode(redact.value(value), { pretty = true }) .. "\n", { scrubbed = true })
end

--- Appends one JSON line of scrubbed values (append-only: survives a crash up to that line).
function Evidence:append_json(rel, value, opts)
  local path = self:path(rel)
  local dir = parent(path)
  if dir then fs.mkdir(dir, { mode = 448 }) end
  self.files[rel] = true
  return fs.append(path, json.encode(redact.value(value)) .. "\n", { mode = 384, sync = opts and opts.sync })
end

-- One JSON text scrubbed value by value (a secret that is JSON syntax cannot cut it),
-- re-encoded only when a value changed; text that is not JSON is scrubbed as text.
local function scrub_json(text)
  local v = json.decode(text)
  if v == nil then return redact.scrub(text) end
  if redact.find_leak_in("x.json", text) == nil then return text end
  return json.encode(redact.value(v))
end

--- Rewrites a file produced by someone else (a child's log, an auth server's
-- decision log) through the scrubber: JSON lines value by value, text as text.
function Evidence:scrub_file(rel)
  local data = fs.read(self:path(rel))
  if not data then return end
  local clean
  if rel:match("%.ndjson$") then
    local lines = {}
    for line in data:gmatch("[^\n]+") do lines[#lines + 1] = scrub_json(line) end
    clean = table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
  elseif rel:match("%.json$") then
    clean = scrub_json(data)
  else
    clean = redact.scrub(data)
  end
  if clean ~= data then fs.write(self:path(rel), clean, { mode = 384 }) end
end

--- Every file below the directory, relative, sorted.
function Evidence:list(rel)
  local out = {}
  local function walk(prefix)
    local names = fs.list(self.dir .. (prefix ~= "" and ("/" .. prefix) or "")) or {}
    for _, n in ipairs(names) do
      local r = prefix ~= "" and (prefix .. "/" .. n) or n
      local _, kind = fs.exists(self:path(r))
      if kind == "directory" then walk(r) else out[#out + 1] = r end
    end
  end
  walk(rel or "")
  return out
end

--- Writes MANIFEST.sha256 and evidence.tar.gz (which holds everything else).
function Evidence:archive(name)
  local crypto = require "kmsrun.crypto"
  local lines = {}
  for _, rel in ipairs(self:list()) do
    if rel ~= "evidence.tar.gz" and rel ~= "MANIFEST.sha256" then
      local data = fs.read(self:path(rel)) or ""
      lines[#lines + 1] = crypto.hex(crypto.sha256(data)) .. "  " .. rel
    end
  end
  self:write("MANIFEST.sha256", table.concat(lines, "\n") .. "\n")
  local out = self:path("evidence.tar.gz")
  local ok, err, code = archive.targz(self.dir, out, { prefix = name })
  if not ok then return nil, err, code end
  return out
end

--- Scans every file (and the archive's entries) for any secret seen during the run.
-- Returns nil when clean, else "file: marker".
function Evidence:leak_scan()
  for _, rel in ipairs(self:list()) do
    if rel:match("%.tar%.gz$") then
      for _, e in ipairs(archive.list(self:path(rel)) or {}) do
        local data = archive.read(self:path(rel), e.name)
        local hit = data and redact.find_leak_in(e.name, data)
        if hit then return rel .. "!" .. e.name .. ": " .. hit end
      end
    else
      local hit = redact.find_leak_in(rel, fs.read(self:path(rel)) or "")
      if hit then return rel .. ": " .. hit end
    end
  end
  return nil
end

return M
