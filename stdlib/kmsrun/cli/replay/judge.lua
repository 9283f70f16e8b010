-- Re-evaluating recorded expectations offline, with the same rules as
-- dsl/expect.lua: expect_error against the recorded response's status and
-- `error`, expect_ok against its status and fields, expect_eq against the
-- recorded operands. The match of expect_error is read back from the step's
-- `expected` text (or from its structured `match` when the report has it).
local json = require "kmsrun.lib.json"

local M = {}

--- Reverses Lua's string.format("%q", s).
function M.unquote(q)
  if type(q) ~= "string" or q:sub(1, 1) ~= '"' or q:sub(-1) ~= '"' or #q < 2 then return nil end
  local body, out, i = q:sub(2, -2), {}, 1
  while i <= #body do
    local c = body:sub(i, i)
    if c == "\\" then
      local n = body:sub(i + 1, i + 1)
      local digits = body:match("^%d%d?%d?", i + 1)
      if digits then
        out[#out + 1] = string.char(tonumber(digits) % 256)
        i = i + 1 + #digits
      else
        local map = { n = "\n", r = "\r", t = "\t", a = "\a", b = "\b", f = "\f", v = "\v", ["\n"] = "\n" }
        out[#out + 1] = map[n] or n
        i = i + 2
      end
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

--- The match of an expect_error step: {kind = "prefix"|"equals"|"contains"|"pattern"|"any", value =} | nil.
function M.parse_match(step)
  if type(step.match) == "table" and step.match.kind then return step.match end
  local e = tostring(step.expected or "")
  local q = e:match('^an RPC error starting with (".*")$')
  if q then return { kind = "prefix", value = M.unquote(q) } end
  q = e:match('^the RPC error (".*")$')
  if q then return { kind = "equals", value = M.unquote(q) } end
  q = e:match('^an RPC error containing (".*")$')
  if q then return { kind = "contains", value = M.unquote(q) } end
  local p = e:match("^an RPC error matching /(.*)/$")
  if p then return { kind = "pattern", value = p } end
  if e == "any RPC error" then return { kind = "any" } end
  return nil
end

function M.describe_match(m)
  if m.kind == "prefix" then return string.format("an RPC error starting with %q", m.value) end
  if m.kind == "equals" then return string.format("the RPC error %q", m.value) end
  if m.kind == "contains" then return string.format("an RPC error containing %q", m.value) end
  if m.kind == "pattern" then return string.format("an RPC error matching /%s/", m.value) end
  return "any RPC error"
end

local function matches(m, s)
  if m.value == nil and m.kind ~= "any" then return false end
  if m.kind == "prefix" then return s:sub(1, #m.value) == m.value end
  if m.kind == "equals" then return s == m.value end
  if m.kind == "contains" then return s:find(m.value, 1, true) ~= nil end
  if m.kind == "pattern" then
    local ok, found = pcall(string.find, s, m.value)
    return ok and found ~= nil
  end
  return m.kind == "any"
end

--- The RPC error string of a transcript entry (the `error` of an HTTP answer's body), or nil.
function M.rpc_error(entry)
  if entry.status and type(entry.response) == "table" and type(entry.response.error) == "string" then
    return entry.response.error
  end
  return nil
end

--- The transcript entry as dsl/expect.lua shows a response.
function M.show(entry)
  if not entry.status then return "no HTTP response: " .. tostring(entry.error) end
  local err = M.rpc_error(entry)
  -- %s: a tampered transcript's status need not be a number (found by tests/fuzz/fuzz_replay.c).
  if err then return string.format("HTTP %s, error: %s", tostring(entry.status), err) end
  local body = type(entry.response) == "table" and json.encode(entry.response) or tostring(entry.response or "")
  if #body > 600 then body = body:sub(1, 600) .. "…" end
  return string.format("HTTP %s, body: %s", tostring(entry.status), body)
end

--- Re-evaluates an expect_error step against the response it judged.
-- Returns passed (boolean) | nil when it cannot be re-evaluated, expected, actual.
function M.expect_error(step, entry)
  local m = M.parse_match(step)
  if not m then return nil, tostring(step.expected), "the recorded expectation is not one expect_error writes" end
  local want = M.describe_match(m)
  local err = M.rpc_error(entry)
  if not err or entry.status ~= 400 then return false, want, M.show(entry) end
  return matches(m, err), want, M.show(entry)
end

--- The fields an expect_ok step required, from "HTTP 200 with a, b" (or `fields`).
function M.parse_fields(step)
  if type(step.fields) == "table" then return step.fields end
  local e = tostring(step.expected or "")
  if e == "HTTP 200" then return {} end
  local list = e:match("^HTTP 200 with (.+)$")
  if not list then return nil end
  local out = {}
  for f in (list .. ", "):gmatch("(.-), ") do out[#out + 1] = f end
  return out
end

function M.expect_ok(step, entry)
  local fields = M.parse_fields(step)
  if not fields then return nil, tostring(step.expected), "the recorded expectation is not one expect_ok writes" end
  local want = "HTTP 200" .. (#fields > 0 and (" with " .. table.concat(fields, ", ")) or "")
  if entry.status ~= 200 or M.rpc_error(entry) then return false, want, M.show(entry) end
  for _, f in ipairs(fields) do
    local v = type(entry.response) == "table" and entry.response[f]
    if v == nil or v == false or v == "" or v == json.null then
      return false, want, "field " .. f .. " missing or empty in " .. M.show(entry)
    end
  end
  return true, want, M.show(entry)
end

--- expect_eq compares two values the runbook computed; the report holds both
-- (as strings), so the comparison is redone on them.
function M.expect_eq(step)
  if step.expected == nil or step.actual == nil then
    return nil, tostring(step.expected), "the report does not hold both operands"
  end
  return step.expected == step.actual, tostring(step.expected), tostring(step.actual)
end

--- Where a value occurs in recorded responses: "#seq kms method .field" list (provenance of expect_eq operands).
function M.find_value(entries, value)
  local hits = {}
  if type(value) ~= "string" or #value < 8 then return hits end
  local function walk(v, path, e)
    if type(v) == "table" then
      for k, x in pairs(v) do walk(x, path .. "." .. tostring(k), e) end
    elseif v == value then
      hits[#hits + 1] = string.format("#%d %s %s %s", e.seq, e.kms or "?", e.method or "?", path)
    end
  end
  for _, e in ipairs(entries) do walk(e.response, "", e) end
  table.sort(hits)
  return hits
end

return M
