-- One kms.toml for every target: the emulator and the real dstack-kms read the
-- same settings (kms-protocol.md 2.1), so they are configured identically.
local toml = require "kmsrun.lib.toml"

local M = {}

--- The configuration table. spec: cert_dir, port, address, webhook_url,
-- site_name, enforce_self_authorization (default true), attest_rpc_cert (default true),
-- image_download_url (turns on OS image verification; with {OS_IMAGE_HASH}).
function M.table(spec)
  local cert_dir = assert(spec.cert_dir, "kms_config: cert_dir is required")
  local function flag(v) if v == nil then return true end return v end
  return {
    rpc = {
      address = spec.address or "127.0.0.1",
      port = spec.port or 8000,
      tls = {
        key = cert_dir .. "/rpc.key",
        certs = cert_dir .. "/rpc.crt",
        mutual = { ca_certs = cert_dir .. "/tmp-ca.crt", mandatory = false },
      },
    },
    core = {
      cert_dir = cert_dir,
      site_name = spec.site_name or "",
      enforce_self_authorization = flag(spec.enforce_self_authorization),
      attest_rpc_cert = flag(spec.attest_rpc_cert),
      auth_api = { type = "webhook", webhook = { url = assert(spec.webhook_url, "kms_config: webhook_url is required") } },
      onboard = {
        enabled = true,
        auto_bootstrap_domain = "",
        address = spec.address or "127.0.0.1",
        port = spec.port or 8000,
      },
      -- Test deployments cannot serve OS images for download (gotcha 15), unless the
      -- target serves some itself (sim: kms() verify_images).
      image = { verify = spec.image_download_url ~= nil, download_url = spec.image_download_url },
    },
  }
end

--- The kms.toml text.
function M.toml(spec)
  return toml.encode(M.table(spec))
end

return M
