-- The app compose the vmm target deploys a KMS with (kms-protocol.md 10.5, the
-- guide's recommendations): inline configs.content, onboard mode, webhook as seen
-- from the CVM, guest-agent socket only with attestation, local key provider,
-- and a compose hash over the exact bytes sent.
local T = require "kmsrun.lib.testing"
local compose = require "kmsrun.targets.vmm.compose"
local toml = require "kmsrun.lib.toml"
local crypto = require "kmsrun.crypto"
local cjson = require "cjson.safe"

local function build(over)
  local spec = { name = "kms-src", kms_image = "registry.example/dstack-kms:test", webhook_url = "http://10.0.2.2:3101" }
  for k, v in pairs(over or {}) do spec[k] = v end
  return compose.build(spec)
end

T.test("app compose: the fields a KMS test deployment needs", function()
  local b = build()
  local app = assert(cjson.decode(b.compose_file))
  T.eq(app.manifest_version, 2)
  T.eq(app.runner, "docker-compose")
  T.eq(app.name, "kms-src")
  T.eq(app.kms_enabled, false, "a KMS must not use a KMS as its key provider")
  T.eq(app.local_key_provider_enabled, true)
  T.eq(app.key_provider, "local")
  T.eq(app.gateway_enabled, false, "port forwarding, not the gateway")
  T.eq(app.secure_time, false, "written explicitly: secure time defaults to true and can hang boot")
  T.eq(type(app.docker_compose_file), "string")
end)

T.test("docker-compose: prebuilt image, kms.toml inlined via configs.content, never configs.file", function()
  local b = build()
  T.contains(b.docker_compose, "image: registry.example/dstack-kms:test")
  T.contains(b.docker_compose, "    content: |\n")
  T.ok(not b.docker_compose:find("file:", 1, true), "no configs.file")
  T.ok(not b.docker_compose:find("build:", 1, true), "no build: (prebuilt image)")
  T.contains(b.docker_compose, "target: /kms/kms.toml")
  T.contains(b.docker_compose, "exec dstack-kms -c /kms/kms.toml")
  T.contains(b.docker_compose, "- '8000:8000'")
end)

T.test("kms.toml: onboard mode, empty auto_bootstrap_domain, webhook, port 8000 on all interfaces", function()
  local b = build()
  local cfg = assert(toml.parse(b.kms_toml))
  T.eq(cfg.core.onboard.enabled, true)
  T.eq(cfg.core.onboard.auto_bootstrap_domain, "")
  T.eq(cfg.core.onboard.address, "0.0.0.0")
  T.eq(cfg.core.onboard.port, 8000)
  T.eq(cfg.rpc.port, 8000)
  T.eq(cfg.core.auth_api.type, "webhook")
  T.eq(cfg.core.auth_api.webhook.url, "http://10.0.2.2:3101")
  T.eq(cfg.core.cert_dir, "/kms/certs")
  T.eq(cfg.core.image.verify, false)
end)

T.test("the guest-agent socket is mounted, except for an instance without attestation", function()
  T.contains(build().docker_compose, "- /var/run/dstack.sock:/var/run/dstack.sock")
  local bare = build { guest_agent = false }
  T.ok(not bare.docker_compose:find("dstack.sock", 1, true), "no guest-agent volume")
end)

T.test("compose hash is SHA-256 of the exact compose_file string; app id its first 20 bytes", function()
  local b = build()
  T.eq(b.compose_hash, crypto.hex(crypto.sha256(b.compose_file)))
  T.eq(b.app_id, b.compose_hash:sub(1, 40))
  T.eq(#b.app_id, 40)
  -- Any change of the inputs changes the measurement.
  T.ok(build({ webhook_url = "http://10.0.2.2:3102" }).compose_hash ~= b.compose_hash)
  T.ok(build({ guest_agent = false }).compose_hash ~= b.compose_hash)
  -- Deterministic: the same inputs give the same bytes.
  T.eq(build().compose_file, b.compose_file)
end)

T.test("the reader gets back exactly what the generator wrote", function()
  for _, ga in ipairs({ true, false }) do
    local b = build { guest_agent = ga }
    local r = assert(compose.read_docker_compose(b.docker_compose))
    T.eq(r.image, "registry.example/dstack-kms:test")
    T.eq(r.kms_toml, b.kms_toml)
    T.eq(r.guest_agent, ga)
    T.eq(r.ports, { "8000:8000" })
  end
  local _, err = compose.read_docker_compose("services:\n  kms:\n    image: x\n")
  T.contains(err, "no configs content")
end)

T.test("misuse raises: no image, an image with spaces", function()
  T.raises(function() compose.docker_compose { kms_toml = "" } end, "kms_image is required")
  T.raises(function() compose.docker_compose { kms_image = "a b", kms_toml = "" } end, "must not contain spaces")
end)
