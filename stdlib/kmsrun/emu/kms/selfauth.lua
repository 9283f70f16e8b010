-- Authorization checks, in the real KMS's order and with its error chains
-- (kms-protocol.md 3.2 step 4, 3.3 step e, 3.4, 4.1, 4.5, section 5):
--   bootstrap self-check, runtime self-check (cached boot info, fresh decision),
--   receiver-side source check, caller checks (GetKmsKey / GetAppKey / SignCert).
-- The test-only mutation switches that remove a check live here, next to the check.
local http = require "kmsrun.http"
local A = require "kmsrun.emu.kms.attestation"
local W = require "kmsrun.emu.kms.webhook"
local hex = require "kmsrun.lib.hex"

local M = {}

local ZERO64 = string.rep("\0", 64)

-- allow-no-quote re-creates the bug of a "no-quote mode": without a guest agent the
-- self-checks silently pass instead of failing.
local function no_quote_bypass(inst)
  return inst.agent.unavailable and inst:mutation("allow-no-quote")
end

--- The instance's own attestation (64 zero bytes of report data), decoded and
-- verified; errors read "Failed to get|decode|verify <noun>: ..." as each KMS
-- path words them ("attestation", "local KMS attestation").
function M.own_attestation(inst, noun)
  local blob, err = inst.agent:attest(ZERO64)
  if not blob then return nil, "Failed to get " .. noun .. ": " .. err end
  local _, derr = A.decode(blob)
  if derr then return nil, "Failed to decode " .. noun .. ": " .. derr end
  local v, verr = A.verify(blob)
  if not v then return nil, "Failed to verify " .. noun .. ": " .. verr end
  return v
end

--- The KMS's own boot info from a fresh local attestation (local_kms_boot_info).
function M.local_boot_info(inst)
  local v, err = M.own_attestation(inst, "local KMS attestation")
  if not v then return nil, err end
  return A.boot_info(v, false, "")
end

-- The webhook's decision about the KMS itself. Upstream asks on every Bootstrap and every
-- trusted RPC (kms/src/main_service/upgrade_authority.rs ensure_self_kms_allowed;
-- main_service.rs:242-262 ensure_self_allowed caches only the boot info);
-- cache-self-decision re-creates a KMS that keeps the first answer.
local function self_decision(inst, bi)
  local cache = inst:mutation("cache-self-decision")
  if cache and inst.cached_self_decision then return inst.cached_self_decision end
  local res, err = inst.webhook:boot_auth(A.boot_info_json(bi), true)
  if cache and res then inst.cached_self_decision = res end
  return res, err
end

--- Bootstrap / auto-bootstrap self-check (ensure_self_kms_allowed); returns true or nil, inner
-- text (the caller adds "KMS is not allowed to bootstrap: ").
function M.bootstrap_check(inst)
  if not inst.cfg.core.enforce_self_authorization then return true end
  if inst:mutation("skip-bootstrap-self-check") or no_quote_bypass(inst) then return true end
  local bi, err = M.local_boot_info(inst)
  if not bi then return nil, "failed to build local KMS boot info: " .. err end
  local res, werr = self_decision(inst, bi)
  if not res then return nil, "failed to call KMS auth check: " .. werr end
  if not res.is_allowed then return nil, "boot denied: " .. res.reason end
  return true
end

--- Runtime self-check of trusted RPCs (ensure_self_allowed). The boot info is computed once
-- and kept (a failure is not cached); the decision is asked for every time.
-- Returns boot_info|false (false: not enforced) or nil, full error text.
function M.runtime_check(inst)
  if not inst.cfg.core.enforce_self_authorization then return false end
  if inst:mutation("skip-runtime-self-check") or no_quote_bypass(inst) then return false end
  local bi = inst.self_boot_info
  if not bi then
    local err
    bi, err = M.local_boot_info(inst)
    if not bi then return nil, "KMS self authorization failed: Failed to load cached self boot info: " .. err end
    inst.self_boot_info = bi
  end
  local res, werr = self_decision(inst, bi)
  if not res then return nil, "KMS self authorization failed: Failed to call self KMS auth check: " .. werr end
  if not res.is_allowed then return nil, "KMS self authorization failed: KMS is not allowed: " .. res.reason end
  return bi
end

--- Receiver-side check of an onboarding source (ensure_kms_allowed) against the receiver's
-- own webhook. Returns true or nil, inner text (the caller adds
-- "Source KMS is not allowed for onboarding: ").
function M.source_check(inst, verified)
  if inst:mutation("skip-receiver-source-check") then return true end
  local bi, err = A.boot_info(verified, false, "")
  if not bi then return nil, "failed to build KMS boot info from attestation: " .. err end
  -- skip-os-image-fill: an old source (no vm_config in its certificate) is then judged on
  -- an empty OS image hash, which no policy lists: onboarding from it is refused.
  if bi.os_image_hash == "" and not inst:mutation("skip-os-image-fill") then
    local own, lerr = M.local_boot_info(inst)
    if not own then return nil, "failed to get local KMS boot info for os_image_hash fallback: " .. lerr end
    bi.os_image_hash = own.os_image_hash
  end
  local res, werr = inst.webhook:boot_auth(A.boot_info_json(bi), true)
  if not res then return nil, "failed to call KMS auth check: " .. werr end
  if not res.is_allowed then return nil, "boot denied: " .. res.reason end
  return true
end

-- Emulated OS image verification (core.image.verify): the real KMS downloads the image and
-- re-measures it; the emulator only checks that download_url answers 2xx for the hash.
-- skip-os-image-verification re-creates a KMS that takes the attested OS image on trust.
local function verify_os_image(inst, bi)
  local img = inst.cfg.core.image
  if not img.verify or inst:mutation("skip-os-image-verification") then return true end
  local url = img.download_url:gsub("{OS_IMAGE_HASH}", hex.encode(bi.os_image_hash))
  local res, err, code = http.request(inst.rewrite(url), { timeout = inst.download_timeout or 120, fresh = true })
  local inner
  if not res then inner = "Failed to download image: " .. W.transport_error(url, err, code)
  elseif res.status < 200 or res.status > 299 then
    inner = "Failed to download image: " .. url .. " returned " .. W.status_text(res.status)
  end
  if inner then return nil, "Failed to verify os image hash: Failed to verify os image hash: " .. inner end
  return true
end

--- Caller checks (ensure_app_attestation_allowed): boot info from the verified caller
-- attestation and vm_config, webhook decision ("Boot denied: "), OS image, TEE-kind gate.
-- Returns { boot_info, gateway_app_id } or nil, error (unwrapped, as upstream).
-- skip-kms-caller-check (GetKmsKey) and skip-app-check (GetAppKey, SignCert) re-create a
-- KMS that trusts any caller with a valid attestation: the webhook is never asked.
function M.caller_check(inst, verified, is_kms, boottime, vm_config)
  local bi, err = A.boot_info(verified, boottime, vm_config)
  if not bi then return nil, err end
  local res
  if inst:mutation(is_kms and "skip-kms-caller-check" or "skip-app-check") then
    local info = inst.webhook:info()
    res = { is_allowed = true, gateway_app_id = info and info.gateway_app_id or "" }
  else
    local werr
    res, werr = inst.webhook:boot_auth(A.boot_info_json(bi), is_kms)
    if not res then return nil, werr end
  end
  if not res.is_allowed then return nil, "Boot denied: " .. res.reason end
  local ok, ierr = verify_os_image(inst, bi)
  if not ok then return nil, ierr end
  return { boot_info = bi, gateway_app_id = res.gateway_app_id }
end

return M
