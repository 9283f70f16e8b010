-- kms/config.lua, the one kms.toml generator, checked for every target against the
-- key set and types of upstream's configuration structs, kept here as data (from
-- Dstack-TEE/dstack at the mirrored HEAD; paths and lines beside each table). A key
-- upstream does not know, a wrong type, or a required key that neither our file nor
-- upstream's built-in kms.toml provides fails the test.
local T = require "kmsrun.lib.testing"
local toml = require "kmsrun.lib.toml"
local kms_config = require "kmsrun.kms.config"

-- Types: "string", "path" (a string), "bool", "integer", "duration" (a string like "2m"),
-- a table of keys (a struct), or { oneof = {...} } for a string enum.
-- deny = true: upstream has #[serde(deny_unknown_fields)] there, so an unknown key
-- stops the KMS at startup; elsewhere serde ignores it, but we still refuse to emit
-- keys upstream would silently drop (they would be our mistake).
-- required: keys without #[serde(default)].
local SCHEMA = {
  -- Rocket reads [rpc] (dstack/kms/src/main.rs:179-181 merges it into the rocket
  -- config); keys from upstream's dstack/kms/kms.toml:13-23.
  rpc = { keys = {
    address = "string", port = "integer",
    tls = { keys = { key = "path", certs = "path",
      mutual = { keys = { ca_certs = "path", mandatory = "bool" } } } },
  } },
  -- KmsConfig: dstack/kms/src/config.rs:35-79 (figment.focus("core"), main.rs:126).
  core = { required = { "cert_dir", "auth_api", "onboard", "image", "metrics" }, keys = {
    cert_dir = "path",
    -- dstack/kms/kms.toml:27; not a KmsConfig field (ignored), but upstream writes it.
    subject_postfix = "string",
    -- AttestationVerifierConfig: dstack/dstack-attest/src/attestation.rs:47-56.
    attestation = { deny = true, keys = {
      insecure_allow_external_trust_anchors = "bool",
      -- CollateralUrls: dstack/dstack-types/src/lib.rs:1120-1127.
      urls = { deny = true, keys = { pccs = "string", amd_kds = "string" } },
      -- RootCaPaths: dstack/dstack-attest/src/attestation.rs:33-45.
      root_ca = { deny = true, keys = { tdx = "path", gcp_tpm = "path", aws_nitro_enclave = "path",
        aws_nitro_tpm = "path", sev_snp_milan = "path", sev_snp_genoa = "path", sev_snp_turin = "path" } },
    } },
    -- AuthApi: config.rs:162-185 (#[serde(tag = "type")], variants dev / webhook).
    auth_api = { keys = { type = { oneof = { "dev", "webhook" } },
      webhook = { required = { "url" }, keys = { url = "string" } },
      dev = { required = { "gateway_app_id" }, keys = { gateway_app_id = "string" } } } },
    -- OnboardConfig: config.rs:187-191; address/port are Rocket's (main.rs:59-61).
    onboard = { required = { "enabled", "auto_bootstrap_domain" },
      keys = { enabled = "bool", auto_bootstrap_domain = "string", address = "string", port = "integer" } },
    -- ImageConfig: config.rs:26-33.
    image = { required = { "verify", "cache_dir", "download_url", "download_timeout" },
      keys = { verify = "bool", cache_dir = "path", download_url = "string", download_timeout = "duration" } },
    sev_snp_key_release = "bool", aws_nitro_tpm_key_release = "bool",
    site_name = "string", attest_rpc_cert = "bool", enforce_self_authorization = "bool",
    -- MetricsConfig: config.rs:81-85.
    metrics = { required = { "enabled" }, keys = { enabled = "bool" } },
    -- AdminConfig: config.rs:91-108 (+ Rocket's address/port, config.rs:88-89).
    admin = { keys = { enabled = "bool", auth_token = "string", htpasswd_file = "path",
      insecure_no_auth = "bool", address = "string", port = "integer" } },
  } },
}

-- The keys upstream's built-in kms.toml (dstack/kms/kms.toml, merged first by
-- load_config, dstack/load_config/src/lib.rs:53-54) already provides: a required key
-- missing from our file is fine when it is here.
local UPSTREAM_DEFAULTS = {
  "core.cert_dir", "core.auth_api", "core.auth_api.webhook.url", "core.auth_api.dev.gateway_app_id",
  "core.onboard", "core.onboard.enabled", "core.onboard.auto_bootstrap_domain",
  "core.image", "core.image.verify", "core.image.cache_dir", "core.image.download_url",
  "core.image.download_timeout", "core.metrics", "core.metrics.enabled",
}
local DEFAULTED = {}
for _, k in ipairs(UPSTREAM_DEFAULTS) do DEFAULTED[k] = true end

local function type_ok(kind, v)
  if kind == "string" or kind == "path" then return type(v) == "string" end
  if kind == "duration" then return type(v) == "string" and v:match("^%d+[smhd]?$") ~= nil end
  if kind == "bool" then return type(v) == "boolean" end
  if kind == "integer" then return math.type(v) == "integer" end
  if type(kind) == "table" and kind.oneof then
    for _, o in ipairs(kind.oneof) do if v == o then return true end end
    return false
  end
  return false
end

-- Returns a list of problems ("" when none).
local function check(value, schema, path, problems)
  for k, v in pairs(value) do
    local where = path == "" and k or (path .. "." .. k)
    local kind = schema.keys[k]
    if kind == nil then
      problems[#problems + 1] = where .. ": not a key upstream knows"
        .. (schema.deny and " (deny_unknown_fields: the KMS would refuse to start)" or "")
    elseif type(kind) == "table" and kind.keys then
      if type(v) ~= "table" then problems[#problems + 1] = where .. ": must be a table"
      else check(v, kind, where, problems) end
    elseif not type_ok(kind, v) then
      problems[#problems + 1] = string.format("%s: %s is not a %s", where, tostring(v),
        type(kind) == "table" and ("one of " .. table.concat(kind.oneof, "/")) or kind)
    end
  end
  for _, r in ipairs(schema.required or {}) do
    local where = path == "" and r or (path .. "." .. r)
    if value[r] == nil and not DEFAULTED[where] then problems[#problems + 1] = where .. ": required, missing" end
  end
  return problems
end

local function problems_of(text)
  local t = assert(toml.parse(text))
  return table.concat(check(t, { keys = SCHEMA }, "", {}), "\n"), t
end

-- Each target's kms.toml, built the way the target builds it.
local CASES = {
  sim = function()
    return require("kmsrun.targets.sim").kms_toml({ name = "kms-src", auth_url = "http://127.0.0.1:1" }, "/w/certs")
  end,
  ["sim with OS image verification"] = function()
    return require("kmsrun.targets.sim").kms_toml({ name = "kms-src", auth_url = "http://127.0.0.1:1" }, "/w/certs",
      "http://127.0.0.1:2/{OS_IMAGE_HASH}.tar.gz")
  end,
  ["local"] = function()
    return require("kmsrun.targets.local.target").kms_toml({ name = "kms-src", auth_url = "http://127.0.0.1:1" }, "/w/kms-src", 9301,
      { pccs = "http://127.0.0.1:9302", roots = "/w/collateral/roots" })
  end,
  vmm = function()
    return require("kmsrun.targets.vmm.compose").kms_toml { webhook_url = "http://10.0.2.2:3101", site_name = "kms-src" }
  end,
}

for name, build in pairs(CASES) do
  T.test("the " .. name .. " target's kms.toml has upstream's keys and types", function()
    local problems, t = problems_of(build())
    T.eq(problems, "", "against upstream's KmsConfig")
    T.eq(type(t.core.attestation), "table", "[core.attestation] is always written")
  end)
end

T.test("the local target trusts the run's collateral service, as upstream's e2e does", function()
  local _, t = problems_of(CASES["local"]())
  local a = t.core.attestation
  -- dstack/tests/e2e/attestation/run-platform.sh:186-201.
  T.eq(a.insecure_allow_external_trust_anchors, true)
  T.eq(a.urls.pccs, "http://127.0.0.1:9302")
  T.eq(a.root_ca.tdx, "/w/collateral/roots/tdx-root-ca.pem")
end)

T.test("sim and vmm keep the vendor roots (no external trust anchor)", function()
  for _, name in ipairs({ "sim", "vmm" }) do
    local _, t = problems_of(CASES[name]())
    T.eq(t.core.attestation.insecure_allow_external_trust_anchors, false, name)
    T.eq(t.core.attestation.root_ca, nil, name)
  end
end)

T.test("the schema check itself fails on what upstream would refuse", function()
  T.contains(problems_of("[core.attestation]\nroot_cas = 1\n"), "core.attestation.root_cas: not a key upstream knows (deny_unknown_fields")
  T.contains(problems_of("[core]\nattest_rpc_cert = \"yes\"\n"), "core.attest_rpc_cert: yes is not a bool")
  T.contains(problems_of("[core.auth_api]\ntype = \"oidc\"\n"), "one of dev/webhook")
  T.contains(problems_of("[core.image]\nverify = false\n"), "")
  T.contains(problems_of("[core.admin]\nenable = true\n"), "core.admin.enable: not a key upstream knows")
end)

T.test("the generator refuses what the KMS would refuse", function()
  local spec = { cert_dir = "/c", webhook_url = "http://a" }
  spec.attestation = { root_ca = { tdx = "/r.pem" } }
  T.raises(function() kms_config.toml(spec) end, "needs insecure_allow_external_trust_anchors = true")
  spec.attestation = { insecure_allow_external_trust_anchors = true, root_ca = { sgx = "/r.pem" } }
  T.raises(function() kms_config.toml(spec) end, "unknown attestation.root_ca key 'sgx'")
  spec.attestation = { urls = { pcs = "http://x" } }
  T.raises(function() kms_config.toml(spec) end, "unknown attestation.urls key 'pcs'")
end)
