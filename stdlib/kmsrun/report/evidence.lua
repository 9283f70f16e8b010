-- The output directory of a run: every file written through here is scrubbed
-- of secrets, owner-only, and written atomically (or appended, for streams).
-- Every file is opened relative to the directory without following a symbolic
-- link (fs `beneath`), so nothing planted inside leads a write or a read out.
local fs = require "kmsrun.fs"
local outdir = require "kmsrun.report.outdir"
local json = require "kmsrun.lib.json"
local redact = require "kmsrun.report.redact"
local archive = require "kmsrun.archive"

local Evidence = {}
Evidence.__index = Evidence

local M = {}

--- Claims the output directory (report/outdir.lua: new or empty, locked).
function M.open(dir)
  dir = dir:gsub("(.)/+$", "%1")
  local ok, err = outdir.claim(dir)
  if not ok then return nil, err end
  return setmetatable({ dir = dir, files = {} }, Evidence)
end

--- nil if name can name a file inside the output directory, else why not
-- (for names runbooks give: `save`, `rpc(..., {save = })`).
function M.check_name(name)
  if type(name) ~= "string" or name == "" then return "a file name must be a non-empty string" end
  if name:sub(1, 1) == "/" then return "'" .. name .. "' is an absolute path; names are relative to the output directory" end
  for part in name:gmatch("[^/]+") do
    if part == ".." then return "'" .. name .. "' would leave the output directory ('..'); names are relative to the output directory" end
  end
  if name:find("[%z\1-\31]") then return "a file name cannot hold control characters" end
  return nil
end

function Evidence:path(rel)
  return self.dir .. "/" .. rel
end

--- Creates a subdirectory (owner-only).
function Evidence:mkdir(rel)
  return fs.mkdir(rel, { mode = 448, beneath = self.dir })
end

--- Writes rel (relative to the output directory) atomically, scrubbed as text;
-- opts.scrubbed: data was encoded from values already scrubbed (redact.value), so
-- it is written as is (scrubbing encoded text could cut its syntax).
function Evidence:write(rel, data, opts)
  local bad = M.check_name(rel)
  if bad then return nil, bad, "EINVAL" end
  if not (opts and opts.scrubbed) then data = redact.scrub(data) end
  local ok, err, code = fs.write(rel, data, { mode = 384, beneath = self.dir })
  -- files[rel] says "written by this run, as last asked": the console claims no other.
  if not ok then self.files[rel] = nil return nil, err, code end
  self.files[rel] = true
  return self:path(rel)
end

--- Writes a value as pretty JSON.
function Evidence:json(rel, value)
  return self:write(rel, json.encode(redact.value(value), { pretty = true }) .. "\n", { scrubbed = true })
end

--- Appends one JSON line of scrubbed values (append-only: survives a crash up to that line).
function Evidence:append_json(rel, value, opts)
  self.files[rel] = true
  return fs.append(rel, json.encode(redact.value(value)) .. "\n",
    { mode = 384, sync = opts and opts.sync, beneath = self.dir })
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
  local data = fs.read(rel, { beneath = self.dir })
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
  if clean ~= data then fs.write(rel, clean, { mode = 384, beneath = self.dir }) end
end

--- Every regular file below the directory, relative, sorted; symbolic links
-- (which the run never makes) are neither followed nor listed.
function Evidence:list(rel)
  local out = {}
  local function walk(prefix)
    local names = fs.list(self.dir .. (prefix ~= "" and ("/" .. prefix) or "")) or {}
    for _, n in ipairs(names) do
      local r = prefix ~= "" and (prefix .. "/" .. n) or n
      local st = fs.stat(self:path(r), { nofollow = true })
      local kind = st and st.kind
      if kind == "directory" then walk(r) elseif kind == "file" and n ~= outdir.LOCK then out[#out + 1] = r end
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
      local data = fs.read(rel, { beneath = self.dir }) or ""
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
      local hit = redact.find_leak_in(rel, fs.read(rel, { beneath = self.dir }) or "")
      if hit then return rel .. ": " .. hit end
    end
  end
  return nil
end

return M
