-- A recorded run, read back for `kmsrun replay`: the output directory (or its
-- evidence.tar.gz), report.json, transcript.ndjson, the manifest check, and the
-- link from each step of the report to the transcript entries it made or judged.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"

local M = {}

-- cjson decodes every number as a float; integers are wanted back as integers.
local function int(v) return type(v) == "number" and math.tointeger(v) or v end

local Record = {}
Record.__index = Record

--- Opens OUTDIR or OUTDIR/evidence.tar.gz (or any kmsrun evidence archive).
-- Returns a record | nil, err.
function M.open(path)
  local ok, kind = fs.exists(path)
  if not ok then return nil, "no such output directory or archive: " .. path end
  local rec = setmetatable({ path = path, warnings = {} }, Record)
  if kind == "directory" then
    local dir = path:gsub("/+$", "")
    rec.read = function(rel) return fs.read(dir .. "/" .. rel) end
    rec.list = function()
      local out = {}
      local function walk(prefix)
        for _, n in ipairs(fs.list(dir .. (prefix ~= "" and ("/" .. prefix) or "")) or {}) do
          local r = prefix ~= "" and (prefix .. "/" .. n) or n
          local _, k = fs.exists(dir .. "/" .. r)
          if k == "directory" then walk(r) else out[#out + 1] = r end
        end
      end
      walk("")
      return out
    end
  else
    local archive = require "kmsrun.archive"
    local entries, err = archive.list(path)
    if not entries then return nil, "cannot read " .. path .. ": " .. tostring(err) end
    local prefix
    for _, e in ipairs(entries) do
      local p = e.name:match("^(.-)report%.json$")
      if p and (p == "" or p:sub(-1) == "/") and (not prefix or #p < #prefix) then prefix = p end
    end
    if not prefix then return nil, path .. " holds no report.json: not a kmsrun evidence archive" end
    rec.read = function(rel) return archive.read(path, prefix .. rel) end
    rec.list = function()
      local out = {}
      for _, e in ipairs(entries) do
        if e.name:sub(1, #prefix) == prefix and e.name:sub(-1) ~= "/" then out[#out + 1] = e.name:sub(#prefix + 1) end
      end
      return out
    end
    rec.archived = true
  end

  local text = rec.read("report.json")
  if not text then return nil, "cannot read report.json in " .. path end
  local report, jerr = json.decode(text)
  if type(report) ~= "table" then return nil, "report.json is not valid JSON: " .. tostring(jerr) end
  rec.report = report
  report.exit_code = int(report.exit_code)
  for _, c in ipairs(type(report.cases) == "table" and report.cases or {}) do
    c.id = int(c.id)
    for _, st in ipairs(type(c.steps) == "table" and c.steps or {}) do st.rpc_seq = int(st.rpc_seq) end
  end
  for _, b in ipairs({ report.setup, report.teardown }) do
    for _, st in ipairs(type(b) == "table" and type(b.steps) == "table" and b.steps or {}) do st.rpc_seq = int(st.rpc_seq) end
  end

  local ttext = rec.read("transcript.ndjson") or ""
  rec.transcript, rec.by_seq = {}, {}
  local n = 0
  for line in ttext:gmatch("[^\n]+") do
    n = n + 1
    local e = json.decode(line)
    if type(e) == "table" then e.seq, e.status = int(e.seq), int(e.status) end
    if type(e) == "table" and math.type(e.seq) == "integer" then
      rec.transcript[#rec.transcript + 1] = e
      rec.by_seq[e.seq] = e
    else
      rec.warnings[#rec.warnings + 1] = string.format("transcript.ndjson line %d is not a transcript entry", n)
    end
  end
  table.sort(rec.transcript, function(a, b) return a.seq < b.seq end)
  return rec
end

--- Checks the files against MANIFEST.sha256. Returns {checked =, changed = {...},
-- missing = {...}} or nil when there is no manifest.
function Record:verify_manifest()
  local text = self.read("MANIFEST.sha256")
  if not text then return nil end
  local res = { checked = 0, changed = {}, missing = {} }
  for line in text:gmatch("[^\n]+") do
    local sum, rel = line:match("^(%x+)  (.+)$")
    if sum then
      local data = self.read(rel)
      if not data then
        res.missing[#res.missing + 1] = rel
      else
        res.checked = res.checked + 1
        if crypto.hex(crypto.sha256(data)) ~= sum:lower() then res.changed[#res.changed + 1] = rel end
      end
    end
  end
  return res
end

--- The blocks of the report in run order: setup, the cases, teardown.
-- Each is {kind = "setup"|"case"|"teardown", name =, id =, status =, error =, steps =}.
function Record:blocks()
  local r, out = self.report, {}
  if type(r.setup) == "table" then
    -- The transcript names the setup block by its declared name, which the report
    -- does not carry: it is whatever case name the setup's entries have that no
    -- case has.
    local case_names, step_names = {}, {}
    for _, c in ipairs(r.cases or {}) do case_names[c.name] = true end
    for _, st in ipairs(r.setup.steps or {}) do step_names[st.name] = true end
    local setup_name = type(r.setup.name) == "string" and r.setup.name or nil
    for _, e in ipairs(setup_name and {} or self.transcript) do
      if e.case and not case_names[e.case] and step_names[e.step] then setup_name = e.case break end
    end
    out[#out + 1] = { kind = "setup", name = setup_name or "setup", status = r.setup.status, error = r.setup.error,
      steps = r.setup.steps or {} }
  end
  for _, c in ipairs(r.cases or {}) do
    out[#out + 1] = { kind = "case", name = c.name, id = c.id, status = c.status, failure_kind = c.failure_kind,
      error = c.error, steps = c.steps or {} }
  end
  if type(r.teardown) == "table" then
    out[#out + 1] = { kind = "teardown", name = "teardown", status = r.teardown.status, error = r.teardown.error,
      steps = r.teardown.steps or {} }
  end
  return out
end

--- "expect_error" / "expect_ok" / "expect_eq" / "expect" for an expectation step, else nil.
function M.expectation_kind(step)
  local k = tostring(step.name):match("^(expect_%a+) ") or (tostring(step.name):match("^expect ") and "expect")
  if k == "expect_error" or k == "expect_ok" or k == "expect_eq" or k == "expect" then return k end
  return nil
end

--- Links every step to the transcript: step.entries (the RPCs it made) and, for
-- expect_error / expect_ok, step.judged (the response it judged).
-- With `rpc_seq` in the report (docs/report-format.md), that is exact. Without
-- it, by order: a step's RPCs are the transcript entries of its block carrying
-- its name; an expectation judged the latest earlier RPC of the method it names.
function Record:link()
  local by_block = {}
  for _, e in ipairs(self.transcript) do
    local k = e.case or ""
    by_block[k] = by_block[k] or {}
    by_block[k][#by_block[k] + 1] = e
  end
  local seen = {} -- entries consumed so far, in run order
  local used = {}
  for _, b in ipairs(self:blocks()) do
    local list = by_block[b.name] or {}
    for _, s in ipairs(b.steps) do
      s.entries = {}
      local kind = M.expectation_kind(s)
      if kind == "expect_error" or kind == "expect_ok" then
        if math.type(s.rpc_seq) == "integer" and self.by_seq[s.rpc_seq] then
          s.judged = self.by_seq[s.rpc_seq]
        else
          -- "expect_ok KMS.GetMeta", "expect_error Onboard.Bootstrap: \"KMS is not…\""
          local method = s.name:match("^expect_%a+ ([^:%s]+)")
          for i = #seen, 1, -1 do
            if seen[i].method == method then s.judged = seen[i] break end
          end
        end
      elseif kind == nil then
        local single = s.name:match("^rpc ") ~= nil
        for _, e in ipairs(list) do
          if not used[e] and e.step == s.name then
            used[e] = true
            s.entries[#s.entries + 1] = e
            seen[#seen + 1] = e
            if single then break end
          elseif #s.entries > 0 and not used[e] then
            break -- this step's entries are consecutive
          end
        end
      end
    end
  end
end

return M
