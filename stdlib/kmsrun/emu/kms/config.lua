-- The kms.toml settings the emulator reads (kms-protocol.md 2.1): the real KMS's defaults,
-- overlaid key by key with ./kms.toml (if present) and the -c file, so one generated
-- kms.toml configures the emulator and the real dstack-kms alike.
local toml = require "kmsrun.lib.toml"

local M = {}

--- The built-in defaults (upstream dstack/kms/kms.toml, the keys the emulator uses).
function M.defaults()
  return {
    rpc = {
      address = "0.0.0.0", port = 8000,
      tls = {
        key = "/etc/kms/certs/rpc.key", certs = "/etc/kms/certs/rpc.crt",
        mutual = { ca_certs = "/etc/kms/certs/tmp-ca.crt", mandatory = false },
      },
    },
    core = {
      cert_dir = "/etc/kms/certs",
      site_name = "",
      enforce_self_authorization = true,
      attest_rpc_cert = true,
      sev_snp_key_release = false,
      aws_nitro_tpm_key_release = false,
      auth_api = { type = "webhook", webhook = { url = "http://auth-api:8000" }, dev = { gateway_app_id = "any" } },
      onboard = { enabled = true, auto_bootstrap_domain = "", address = "0.0.0.0", port = 8000 },
      image = {
        verify = true, cache_dir = "/usr/share/dstack/images",
        download_url = "http://localhost:8000/{OS_IMAGE_HASH}.tar.gz", download_timeout = "2m",
      },
      metrics = { enabled = true },
      attestation = { insecure_allow_external_trust_anchors = false },
    },
  }
end

local function merge(dst, src)
  for k, v in pairs(src) do
    if type(v) == "table" and type(dst[k]) == "table" and getmetatable(v) ~= toml.array_mt then
      merge(dst[k], v)
    else
      dst[k] = v
    end
  end
  return dst
end

-- Type checks for the keys the emulator relies on: a wrong type is a startup error, as
-- the real KMS's config loader would refuse it.
local SHAPE = {
  { "rpc.address", "string" }, { "rpc.port", "integer" },
  { "rpc.tls.key", "string" }, { "rpc.tls.certs", "string" }, { "rpc.tls.mutual.ca_certs", "string" },
  { "rpc.tls.mutual.mandatory", "boolean" },
  { "core.cert_dir", "string" }, { "core.site_name", "string" },
  { "core.enforce_self_authorization", "boolean" }, { "core.attest_rpc_cert", "boolean" },
  { "core.sev_snp_key_release", "boolean" }, { "core.aws_nitro_tpm_key_release", "boolean" },
  { "core.auth_api.type", "string" }, { "core.auth_api.webhook.url", "string" },
  { "core.auth_api.dev.gateway_app_id", "string" },
  { "core.onboard.enabled", "boolean" }, { "core.onboard.auto_bootstrap_domain", "string" },
  { "core.onboard.address", "string" }, { "core.onboard.port", "integer" },
  { "core.image.verify", "boolean" }, { "core.image.download_url", "string" },
}

local function get(t, dotted)
  for part in dotted:gmatch("[^%.]+") do
    if type(t) ~= "table" then return nil end
    t = t[part]
  end
  return t
end

local function check(cfg)
  for _, s in ipairs(SHAPE) do
    local v = get(cfg, s[1])
    local ok = (s[2] == "integer" and math.type(v) == "integer") or (s[2] ~= "integer" and type(v) == s[2])
    if not ok then
      return nil, string.format("invalid configuration: %s must be a %s, got %s", s[1], s[2],
        v == nil and "nothing" or type(v))
    end
  end
  local aok, aerr = require("kmsrun.emu.kms.config_attestation").check(cfg.core.attestation)
  if not aok then return nil, aerr end
  local t = cfg.core.auth_api.type
  if t ~= "webhook" and t ~= "dev" then
    return nil, "invalid configuration: core.auth_api.type: unknown variant `" .. t .. "`, expected `dev` or `webhook`"
  end
  if cfg.rpc.port < 0 or cfg.rpc.port > 65535 or cfg.core.onboard.port < 0 or cfg.core.onboard.port > 65535 then
    return nil, "invalid configuration: ports must be in 0..65535"
  end
  return cfg
end

--- Builds the configuration: defaults, then each layer (tables or TOML file paths).
-- Returns cfg or nil, message.
function M.load(layers)
  local cfg = M.defaults()
  for _, layer in ipairs(layers or {}) do
    local t = layer
    if type(layer) == "string" then
      local perr
      t, perr = toml.parse_file(layer)
      if not t then return nil, "failed to load config: " .. perr end
    end
    merge(cfg, t)
  end
  return check(cfg)
end

--- Paths of the files in cert_dir (2.6).
function M.paths(cfg)
  local d = cfg.core.cert_dir:gsub("/+$", "")
  local function p(name) return d .. "/" .. name end
  return {
    dir = d,
    tmp_ca_crt = p("tmp-ca.crt"), tmp_ca_key = p("tmp-ca.key"),
    root_ca_crt = p("root-ca.crt"), root_ca_key = p("root-ca.key"),
    rpc_crt = p("rpc.crt"), rpc_key = p("rpc.key"),
    k256_key = p("root-k256.key"),
    rpc_domain = p("rpc-domain"),
    bootstrap_info = p("bootstrap-info.json"),
    identity = p("kms-sim-identity.json"),
  }
end

--- The seven files whose presence means "keys exist" (2.2).
M.KEY_FILES = { "tmp_ca_crt", "tmp_ca_key", "root_ca_crt", "root_ca_key", "rpc_crt", "rpc_key", "k256_key" }

return M
