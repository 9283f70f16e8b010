-- One run's connection to a dstack-vmm: the address and credentials (vars
-- first, then the upstream CLI's environment variables), the OS image to boot,
-- and the host that forwarded ports are reached on. Built once per run, on
-- first use, by whichever deploy gets there first; the others wait for it.
local client = require "kmsrun.targets.vmm.client"
local time = require "kmsrun.time"
local task = require "kmsrun.lib.task"
local fs = require "kmsrun.fs"

local M = {}

local function pick(var, env)
  if var ~= nil and var ~= "" then return var end
  local v = os.getenv(env)
  if v ~= nil and v ~= "" then return v end
  return nil
end

local function truthy(v)
  return v == true or v == "true" or v == "1" or v == "yes"
end
M.truthy = truthy

-- Plain release images first, then nvidia ones, then dev ones (upstream ships
-- dstack-X.Y.Z, dstack-nvidia-X.Y.Z, dstack-dev-X.Y.Z, dstack-nvidia-dev-X.Y.Z);
-- within a kind the newest version ("0.5.10" > "0.5.9").
local function kind(img)
  local name = tostring(img.name)
  local dev = img.is_dev or name:find("%-dev%-") ~= nil
  local nvidia = name:find("nvidia", 1, true) ~= nil
  return (dev and 2 or 0) + (nvidia and 1 or 0)
end

local function newer(a, b)
  local ka, kb = kind(a), kind(b)
  if ka ~= kb then return ka < kb end
  local va, vb = {}, {}
  for n in tostring(a.version or ""):gmatch("%d+") do va[#va + 1] = tonumber(n) end
  for n in tostring(b.version or ""):gmatch("%d+") do vb[#vb + 1] = tonumber(n) end
  for i = 1, math.max(#va, #vb) do
    if (va[i] or -1) ~= (vb[i] or -1) then return (va[i] or -1) > (vb[i] or -1) end
  end
  return tostring(a.name) > tostring(b.name)
end

local function choose_image(c, wanted)
  local res, err = c:call("ListImages")
  if not res then return nil, err end
  local images = type(res) == "table" and type(res.images) == "table" and res.images or {}
  local names = {}
  for _, img in ipairs(images) do names[#names + 1] = tostring(img.name) end
  if wanted then
    for _, img in ipairs(images) do if img.name == wanted then return wanted end end
    return nil, string.format("the VMM has no OS image '%s' (it offers: %s); set --var vmm_image=NAME",
      wanted, #names > 0 and table.concat(names, ", ") or "none")
  end
  if #images == 0 then return nil, "the VMM offers no OS image (ListImages is empty)" end
  table.sort(images, newer)
  return images[1].name
end

local function host_of(where)
  if where.unix_socket then return "127.0.0.1" end
  local host = where.base:match("^https?://%[([^%]]+)%]") or where.base:match("^https?://([^:/]+)")
  return host or "127.0.0.1"
end

local function build(ctx)
  local v = ctx.vars
  local url = pick(v.vmm_url, "DSTACK_VMM_URL")
  local creds = {
    token = pick(v.vmm_token, "DSTACK_VMM_TOKEN"),
    user = pick(v.vmm_auth_user, "DSTACK_VMM_AUTH_USER"),
    password = pick(v.vmm_auth_password, "DSTACK_VMM_AUTH_PASSWORD"),
  }
  local tls
  if truthy(v.vmm_tls_insecure) then tls = { insecure = true }
  elseif v.vmm_ca_file and v.vmm_ca_file ~= "" then
    local ca, err = fs.read(v.vmm_ca_file)
    if not ca then return nil, "cannot read vmm_ca_file: " .. tostring(err) end
    tls = { ca = ca }
  end
  -- client.new taints the credentials before anything else can see them.
  local c, err = client.new(url, creds, { tls = tls, timeout = tonumber(v.vmm_timeout) or 60 })
  if not c then return nil, err end
  local image, ierr = choose_image(c, v.vmm_image ~= "" and v.vmm_image or nil)
  if not image then return nil, ierr end
  local where = client.parse_url(url)
  -- Status tells whether port forwards are enabled at all ([cvm.port_mapping]
  -- enabled, false in upstream's vmm.toml); without them no KMS is reachable.
  local st = c:call("Status", { brief = true })
  if type(st) == "table" and st.port_mapping_enabled == false then
    return nil, "the VMM has port mapping disabled: set `[cvm.port_mapping] enabled = true` in its vmm.toml "
      .. "(with a range that holds vmm_port_range); kmsrun reaches every KMS through a port forward"
  end
  -- What the VMM says about itself: Version (all releases) and GetMeta's
  -- networking (main only; dstack/vmm/src/main_service.rs:804-860). Neither is required.
  local ver = c:call("Version")
  local meta = c:call("GetMeta")
  local net = type(meta) == "table" and type(meta.networking) == "table" and meta.networking.default_mode or nil
  local s = {
    client = c, image = image,
    version = type(ver) == "table" and ver.version or nil, rev = type(ver) == "table" and ver.rev or nil,
    networking = (net ~= nil and net ~= "") and net or nil, remote = not (where.unix_socket or host_of(where) == "localhost"
      or host_of(where) == "::1" or host_of(where):match("^127%.")),
    host = (v.vmm_host ~= nil and v.vmm_host ~= "") and v.vmm_host or host_of(where),
  }
  return s
end

--- Checks that the VMM offers the OS image name; returns it or nil, err.
function M.check_image(s, name)
  return choose_image(s.client, name)
end

--- The run's session, or nil, err (the same error for every caller). It lives in
-- the target's own state (ctx.state), one per run.
function M.get(ctx)
  local state = ctx.state.vmm_session
  if not state then
    state = { loading = true }
    ctx.state.vmm_session = state
    local ok, s, err = pcall(build, ctx)
    if not ok and task.is_cancelled(s) then
      state.err, state.loading = tostring(s), false
      error(s, 0)
    end
    if not ok then state.err = tostring(s)
    elseif not s then state.err = err
    else state.session = s end
    state.loading = false
  end
  while state.loading do time.sleep(0.01) end
  if state.err then return nil, state.err end
  return state.session
end

--- The session if one was built (nil before the first deploy or after it failed).
function M.current(ctx)
  return ctx.state.vmm_session and ctx.state.vmm_session.session
end

return M
