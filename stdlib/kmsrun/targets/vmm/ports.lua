-- Host ports of a KMS CVM's port forwards. A dstack-vmm only forwards host ports
-- inside its `[cvm.port_mapping] range` (default tcp 1-20000, dstack/vmm/vmm.toml:129
-- on main; checked in create_manifest_from_vm_config, dstack/vmm/src/main_service.rs:195-207),
-- so a port from bind(0) (32768-60999 on Linux) is refused. Ports are picked at
-- random inside vmm_port_range, skipping privileged ones when the range allows,
-- ports this process already handed out, and ports busy on this host (which
-- only tells anything when the VMM runs here; a clash on the VMM is retried).
local hostport = require "kmsrun.targets.hostport"
local crypto = require "kmsrun.crypto"

local M = {}

M.DEFAULT_RANGE = "1-20000"

local handed_out = {}

--- Parses "1-20000" or "9000-9100,12000-12999" into {{from, to}...}, or nil, err.
function M.parse_range(text)
  local list = {}
  for item in tostring(text or ""):gmatch("[^,%s]+") do
    local a, b = item:match("^(%d+)%-(%d+)$")
    if not a then a = item:match("^(%d+)$") b = a end
    a, b = tonumber(a), tonumber(b)
    if not a or a < 1 or b > 65535 or a > b then
      return nil, string.format("vmm_port_range: '%s' is not a port range FROM-TO within 1-65535", item)
    end
    list[#list + 1] = { from = math.tointeger(a), to = math.tointeger(b) }
  end
  if #list == 0 then return nil, "vmm_port_range is empty: give the VMM's [cvm.port_mapping] range, e.g. 1-20000" end
  return list
end

function M.describe(ranges)
  local parts = {}
  for _, r in ipairs(ranges) do parts[#parts + 1] = r.from == r.to and tostring(r.from) or (r.from .. "-" .. r.to) end
  return table.concat(parts, ",")
end

function M.contains(ranges, port)
  for _, r in ipairs(ranges) do if port >= r.from and port <= r.to then return true end end
  return false
end

-- The part of the ranges above 1023, when there is one: a VMM not running as
-- root cannot bind privileged ports for its forwards.
local function usable(ranges)
  local high = {}
  for _, r in ipairs(ranges) do
    if r.to >= 1024 then high[#high + 1] = { from = math.max(r.from, 1024), to = r.to } end
  end
  return #high > 0 and high or ranges
end

local function random_in(ranges)
  local total = 0
  for _, r in ipairs(ranges) do total = total + (r.to - r.from + 1) end
  local bytes = crypto.random(4)
  local n = (string.unpack("<I4", bytes) % total)
  for _, r in ipairs(ranges) do
    local size = r.to - r.from + 1
    if n < size then return r.from + n end
    n = n - size
  end
  return ranges[1].from
end

--- A port inside ranges not handed out before and free on this host (host
-- default 127.0.0.1), or nil, err.
function M.pick(ranges, host)
  local pool = usable(ranges)
  for _ = 1, 200 do
    local port = random_in(pool)
    if not handed_out[port] and hostport.check(port, host) then
      handed_out[port] = true
      return port
    end
  end
  return nil, "no free host port in vmm_port_range=" .. M.describe(ranges) .. " after 200 tries"
end

--- Gives back ports picked for a CreateVm that failed, except `keep` (the port
-- the VMM said clashes: not to be tried again by this process).
function M.release(list, keep)
  for _, port in ipairs(list) do
    if port ~= keep then handed_out[port] = nil end
  end
end

--- The host port a clash error names ("... tcp 127.0.0.1:15200"), or nil.
function M.clashing_port(err)
  return math.tointeger(tonumber(tostring(err):match(":(%d+)%s*$")))
end

--- Parses vmm_ports: "9301,9302" or with guest-agent ports "9301/9401,9302/9402".
-- Returns a list of {kms =, agent =} or nil, err.
function M.parse_fixed(text)
  local list = {}
  for item in tostring(text or ""):gmatch("[^,%s]+") do
    local k, a = item:match("^(%d+)/(%d+)$")
    if not k then k = item:match("^(%d+)$") end
    local kn, an = tonumber(k), a and tonumber(a)
    if not kn or kn < 1 or kn > 65535 or (a and (not an or an < 1 or an > 65535)) then
      return nil, string.format("vmm_ports: '%s' is not PORT or PORT/GUEST_AGENT_PORT (1-65535)", item)
    end
    list[#list + 1] = { kms = math.tointeger(kn), agent = an and math.tointeger(an) or nil }
  end
  return list
end

--- What a CreateVm error says about ports: "clash" (retry elsewhere),
-- "range" (outside [cvm.port_mapping] range), "disabled", or nil.
function M.classify(err)
  err = tostring(err)
  if err:find("Port mapping is not allowed", 1, true) then return "range" end
  if err:find("Port mapping is disabled", 1, true) then return "disabled" end
  if err:find("conflicts with VM", 1, true) or err:find("duplicate host port", 1, true)
    or err:find("ddress already in use", 1, true) then return "clash" end
  return nil
end

function M.explain(kind, err, ranges)
  if kind == "range" then
    return string.format("%s: the VMM's [cvm.port_mapping] range does not allow this host port; kmsrun picks "
      .. "ports in vmm_port_range=%s — set it (or vmm_ports) to ports inside the range of the VMM's vmm.toml",
      tostring(err), M.describe(ranges))
  end
  if kind == "disabled" then
    return tostring(err) .. ": set `[cvm.port_mapping] enabled = true` in the VMM's vmm.toml "
      .. "(it is false upstream by default); kmsrun reaches every KMS through a port forward"
  end
  return tostring(err)
end

return M
