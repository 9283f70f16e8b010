-- The text of `kmsrun plan`: the variables and their values, the auth servers
-- and KMS instances a run would start, each block's steps as the dry run
-- recorded them, and what the cleanup ledger would undo — in that order,
-- which is the order a run does them in.
local render = require "kmsrun.cli.check.render"

local M = {}

local function auth_line(auth)
  local initial = auth.spec.policy
  local desc = "deny_all()"
  if type(initial) == "table" then desc = rawget(initial, "__kind") == "policy" and initial.description or "custom policy" end
  if auth.spec.url then
    return string.format("existing auth-simple at %s%s, initial policy as found", auth.spec.url,
      auth.spec.config_path and (", policy file " .. auth.spec.config_path) or " (its policy cannot be changed)")
  end
  return "in-process on loopback, initial policy " .. desc
end

local function pad(names)
  local w = 0
  for _, n in ipairs(names) do w = math.max(w, #n) end
  return "%-" .. w .. "s"
end

local function variables(w, a)
  local v = a.vars
  if #v.names == 0 then return end
  w("")
  w("variables:")
  local shown = {}
  for _, name in ipairs(v.names) do
    local decl, value = v.decls[name], v.values[name]
    if value == nil then shown[#shown + 1] = "(no value)"
    elseif decl.secret then shown[#shown + 1] = "[secret]"
    else shown[#shown + 1] = render.value(value) end
  end
  local fmt = "  " .. pad(v.names) .. "  " .. pad(shown) .. "  (%s)"
  for i, name in ipairs(v.names) do
    local decl = v.decls[name]
    local notes = { v.sources[name] }
    if decl.required then notes[#notes + 1] = "required" end
    if decl.secret then notes[#notes + 1] = "secret" end
    local lines = a.var_lines[name]
    if lines then notes[#notes + 1] = "read at line" .. (#lines > 1 and "s " or " ") .. table.concat(lines, ", ") end
    w(string.format(fmt, name, shown[i], table.concat(notes, "; ")))
  end
end

local function topology(w, a)
  local spec = a.spec
  if #spec.auths > 0 then
    w("")
    w("auth servers (started before setup):")
    local names = {}
    for _, h in ipairs(spec.auths) do names[#names + 1] = h.name end
    local fmt = pad(names)
    for _, h in ipairs(spec.auths) do w(string.format("  " .. fmt .. "  %s", h.name, auth_line(h))) end
  end
  w("")
  w(string.format("would deploy on target %s (%s):", a.target.name, a.target.summary or a.target.name))
  local deployed, names = {}, {}
  for _, h in ipairs(a.deployed or {}) do deployed[h] = true; names[#names + 1] = h.name end
  local fmt = pad(names)
  for _, h in ipairs(a.deployed or {}) do
    local s = a.world.kms[h] or {}
    local extra = h.spec.attestation == false and ", no attestation source" or ""
    if h.spec.image then extra = extra .. ", image " .. h.spec.image end
    -- The emulator knobs (targets/knobs.lua): what makes this instance differ.
    if h.spec.device then extra = extra .. ", device " .. h.spec.device end
    if h.spec.tcb_status then extra = extra .. ", TCB " .. h.spec.tcb_status end
    if h.spec.advisories and #h.spec.advisories > 0 then extra = extra .. ", advisories " .. table.concat(h.spec.advisories, " ") end
    if h.spec.old_format_cert then extra = extra .. ", old-format certificate" end
    if h.spec.verify_images then extra = extra .. ", verifies images " .. table.concat(h.spec.verify_images, " ") end
    w(string.format("  " .. fmt .. "  auth %s%s (deployed at line %s)", h.name, h.auth.name, extra, tostring(s.deployed_line or "?")))
  end
  if #names == 0 then w("  nothing") end
  for _, h in ipairs(spec.kmss) do
    if not deployed[h] then w(string.format("  (%s is declared but not deployed by this selection)", h.name)) end
  end
end

local function steps(w, list, indent)
  for _, s in ipairs(list) do
    w(string.format("%s%s: %s", indent, tostring(s.line or "?"), s.text))
    steps(w, s.children, indent .. "    ")
  end
end

local function blocks(w, a)
  local id_of = {}
  for _, c in ipairs(a.spec.cases) do id_of[c.name] = c.id end
  for _, rec in ipairs(a.recordings or {}) do
    local b = rec.block
    w("")
    if b.kind == "case" then
      local needs = {}
      for _, n in ipairs(type(b.needs) == "table" and b.needs or {}) do needs[#needs + 1] = "case " .. tostring(id_of[n] or n) end
      w(string.format("case %d %q%s:", b.id, b.name, #needs > 0 and (" (needs " .. table.concat(needs, ", ") .. ")") or ""))
    else
      w(string.format("%s%s:", b.kind, (b.name and b.name ~= b.kind) and (" " .. string.format("%q", b.name)) or ""))
    end
    steps(w, rec.steps, "  ")
    if #rec.steps == 0 then w("  (no steps)") end
    if rec.error then w("  (the dry run stopped here: see the mistakes below)") end
  end
end

local function cleanup(w, a)
  -- The ledger: auth servers are registered first, each deploy after; undone last-first.
  local ledger = {}
  for _, h in ipairs(a.spec.auths) do
    if not h.spec.url then ledger[#ledger + 1] = "stop auth server " .. h.name
    elseif h.spec.config_path then ledger[#ledger + 1] = "restore the original policy file of " .. h.name end
  end
  for _, h in ipairs(a.deployed or {}) do ledger[#ledger + 1] = "remove " .. h.name .. " from target " .. a.target.name end
  w("")
  w("would clean up (last registered first):")
  for i = #ledger, 1, -1 do w("  " .. ledger[i]) end
  if #ledger == 0 then w("  nothing") end
end

--- The plan of analysis a (from check/analyze.lua) as a string.
function M.text(a)
  local out = {}
  local function w(s) out[#out + 1] = s end
  local h = a.spec.header or {}
  w(string.format("plan for %s on target %s: nothing is started", a.path, a.target.name))
  if h.description then w("  " .. h.description) end
  local sel = {}
  for _, c in ipairs(a.selected) do sel[#sel + 1] = tostring(c.id) end
  if #a.selected == #a.spec.cases then w(string.format("cases: all %d", #a.spec.cases))
  else w(string.format("cases: %s of %d (the selection and the cases it needs)", table.concat(sel, ", "), #a.spec.cases)) end
  variables(w, a)
  topology(w, a)
  blocks(w, a)
  cleanup(w, a)
  return table.concat(out, "\n") .. "\n"
end

return M
