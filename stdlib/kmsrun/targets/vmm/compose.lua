-- The app compose of a KMS test CVM, as the self-authorization guide recommends
-- (kms-protocol.md 10.5, gotchas 18-20): a prebuilt KMS image, kms.toml inlined
-- through docker-compose `configs.content` (never `configs.file`, which may not
-- be shipped to the VM), onboard mode with an empty auto_bootstrap_domain, the
-- guest-agent socket mounted (left out for an instance without attestation),
-- the local key provider (a KMS must not use a KMS as its key provider).
-- Also a reader for the docker-compose part, for fakes and tests: it reads back
-- exactly what the generator writes, not YAML in general.
local json = require "kmsrun.lib.json"
local crypto = require "kmsrun.crypto"
local kms_config = require "kmsrun.kms.config"

local M = {}

--- Where things live inside the KMS container.
M.KMS_DIR = "/kms"
M.CERT_DIR = "/kms/certs"
M.CONFIG_PATH = "/kms/kms.toml"
M.VM_PORT = 8000
M.GUEST_AGENT_SOCKET = "/var/run/dstack.sock"

--- The kms.toml of a KMS in a CVM: listens on 0.0.0.0:8000 (forwarded by the
-- VMM), keys in the container's volume, webhook as seen from inside the CVM.
function M.kms_toml(spec)
  return kms_config.toml {
    cert_dir = M.CERT_DIR, port = M.VM_PORT, address = "0.0.0.0",
    webhook_url = assert(spec.webhook_url, "compose.kms_toml: webhook_url is required"),
    site_name = spec.site_name,
  }
end

local function indent_block(text, prefix)
  local out = {}
  for line in (text:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do
    out[#out + 1] = line == "" and "" or (prefix .. line)
  end
  return table.concat(out, "\n") .. "\n"
end

--- The docker-compose YAML. spec: kms_image, kms_toml, guest_agent (default true).
function M.docker_compose(spec)
  local image = assert(spec.kms_image, "compose.docker_compose: kms_image is required")
  if image:find("[%s'\"]") then error("compose.docker_compose: kms_image must not contain spaces or quotes: " .. image, 2) end
  local toml = assert(spec.kms_toml, "compose.docker_compose: kms_toml is required")
  local volumes = { "      - kms-volume:" .. M.KMS_DIR }
  if spec.guest_agent ~= false then
    volumes[#volumes + 1] = "      - " .. M.GUEST_AGENT_SOCKET .. ":" .. M.GUEST_AGENT_SOCKET
  end
  local lines = {
    "services:",
    "  kms:",
    "    image: " .. image,
    -- A fixed name: the guest agent serves its log as /logs/kms (guest_agent.lua).
    "    container_name: kms",
    "    restart: unless-stopped",
    -- The shape upstream's compose-simple.yaml uses (10.5).
    string.format("    command: sh -c 'mkdir -p %s %s/images && exec dstack-kms -c %s'",
      M.CERT_DIR, M.KMS_DIR, M.CONFIG_PATH),
    "    volumes:",
    table.concat(volumes, "\n"),
    "    ports:",
    string.format("      - '%d:%d'", M.VM_PORT, M.VM_PORT),
    "    configs:",
    "      - source: kms_config",
    "        target: " .. M.CONFIG_PATH,
    "volumes:",
    "  kms-volume:",
    "configs:",
    "  kms_config:",
    "    content: |",
  }
  return table.concat(lines, "\n") .. "\n" .. indent_block(toml, "      ")
end

--- The app compose JSON (the exact string whose SHA-256 is the compose hash).
-- spec: name, docker_compose, key_provider ("local" (default) or "none").
function M.app_compose(spec)
  local kp = spec.key_provider or "local"
  assert(kp == "local" or kp == "none", "compose.app_compose: key_provider must be local or none")
  return json.encode(json.ordered {
    "manifest_version", 2,
    "name", spec.name or "kms",
    "runner", "docker-compose",
    "docker_compose_file", assert(spec.docker_compose, "compose.app_compose: docker_compose is required"),
    "kms_enabled", false,
    "gateway_enabled", false,
    -- "local" needs the VMM's [key_provider] (vmm.toml); "none" gives the CVM
    -- temporary keys (dstack/dstack-util/src/system_setup.rs:2276-2280 on main).
    "local_key_provider_enabled", kp == "local",
    "key_provider", kp,
    "key_provider_id", "",
    "public_logs", true,
    "public_sysinfo", true,
    "public_tcbinfo", true,
    "allowed_envs", json.array(),
    "no_instance_id", false,
    -- Secure time can hang the boot (10.5); the KMS does not need it here.
    "secure_time", false,
  }, { pretty = true }) .. "\n"
end

--- Compose hash (hex SHA-256 of the exact bytes) and the default app id (its first 20 bytes).
function M.hash(compose_file)
  return crypto.hex(crypto.sha256(compose_file))
end

function M.app_id(compose_file)
  return M.hash(compose_file):sub(1, 40)
end

--- Everything for one KMS: spec = {name, kms_image, webhook_url, guest_agent, key_provider}.
-- Returns {kms_toml, docker_compose, compose_file, compose_hash, app_id}.
function M.build(spec)
  local toml = M.kms_toml { webhook_url = spec.webhook_url, site_name = spec.name }
  local dc = M.docker_compose { kms_image = spec.kms_image, kms_toml = toml, guest_agent = spec.guest_agent }
  local cf = M.app_compose { name = spec.name, docker_compose = dc, key_provider = spec.key_provider }
  return { kms_toml = toml, docker_compose = dc, compose_file = cf, compose_hash = M.hash(cf), app_id = M.app_id(cf) }
end

--- Reads back what docker_compose wrote: {image =, container_name =, kms_toml =, guest_agent =, ports = {"8000:8000"}}.
-- Returns nil, err when the expected pieces are missing.
function M.read_docker_compose(yaml)
  if type(yaml) ~= "string" then return nil, "docker_compose_file is not a string" end
  local r = { guest_agent = false, ports = {} }
  local lines = {}
  for line in (yaml .. (yaml:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do lines[#lines + 1] = line end
  local i = 1
  local section
  while i <= #lines do
    local line = lines[i]
    local top = line:match("^(%w[%w_-]*):")
    if top then section = top end
    local image = line:match("^%s+image:%s*(%S+)%s*$")
    if image and section == "services" then r.image = image end
    local cname = line:match("^%s+container_name:%s*(%S+)%s*$")
    if cname and section == "services" then r.container_name = cname end
    if line:match("^%s+%-%s*" .. M.GUEST_AGENT_SOCKET:gsub("%p", "%%%0") .. ":") then r.guest_agent = true end
    local port = line:match("^%s+%-%s*'(%d+:%d+)'%s*$") or line:match("^%s+%-%s*\"(%d+:%d+)\"%s*$")
    if port then r.ports[#r.ports + 1] = port end
    local ind = line:match("^(%s*)content:%s*|%s*$")
    if ind and section == "configs" then
      -- A literal block scalar: every following line indented deeper (or blank).
      local body, strip = {}, nil
      i = i + 1
      while i <= #lines do
        local l = lines[i]
        local lead = l:match("^(%s*)")
        if l:match("^%s*$") then
          body[#body + 1] = ""
        elseif #lead > #ind then
          strip = strip or #lead
          body[#body + 1] = l:sub(strip + 1)
        else
          break
        end
        i = i + 1
      end
      while body[#body] == "" do body[#body] = nil end
      r.kms_toml = table.concat(body, "\n") .. "\n"
    else
      i = i + 1
    end
  end
  if not r.image then return nil, "docker-compose: no service image" end
  if not r.kms_toml then return nil, "docker-compose: no configs content (kms.toml)" end
  return r
end

return M
