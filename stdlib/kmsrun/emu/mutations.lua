-- The one registry of the emulators' mutation switches. A mutation re-creates one
-- authorization bug by skipping one check that the real system performs, so a test
-- suite can prove it notices (a case that passes with the switch on proves nothing
-- about that check). `kmsrun mutants` runs a runbook's cases under each of them.
--
-- emulator: which emulator performs the check: "kms" (kms-sim, switched per instance
-- with --mutation) or "auth" (the auth-simple emulator, switched per server).
-- check: the check that the switch removes, as the real code names it.
-- knob: the kms() option without which the check never runs (its switch can only be
-- caught by a runbook that declares an instance with that option; nil: always runs).
local M = {}

M.SWITCHES = {
  { name = "skip-bootstrap-self-check", emulator = "kms", check = "ensure_self_kms_allowed (Bootstrap)",
    description = "Bootstrap does not ask the webhook whether the KMS itself is allowed" },
  { name = "skip-receiver-source-check", emulator = "kms", check = "ensure_kms_allowed (Onboard receiver)",
    description = "Onboard (receiver) does not check the source KMS against its own webhook" },
  { name = "skip-runtime-self-check", emulator = "kms", check = "ensure_self_allowed (trusted RPCs)",
    description = "trusted runtime RPCs do not re-check the KMS's own authorization" },
  { name = "cache-self-decision", emulator = "kms", check = "fresh self decision (ensure_self_kms_allowed, ensure_self_allowed)",
    description = "the KMS keeps the webhook's first answer about itself: a later policy change does not reach Bootstrap or trusted RPCs" },
  { name = "allow-no-quote", emulator = "kms", check = "guest agent attestation",
    description = "without a guest agent, bootstrap succeeds with an empty attestation and trusted RPCs skip the self-check" },
  { name = "skip-kms-caller-check", emulator = "kms", check = "ensure_kms_allowed (GetKmsKey caller)",
    description = "GetKmsKey hands the KMS keys to any attested caller without asking the webhook whether it is an allowed KMS" },
  { name = "skip-app-check", emulator = "kms", check = "ensure_app_boot_allowed (GetAppKey, SignCert)",
    description = "GetAppKey and SignCert serve any attested app without asking the webhook whether it may boot" },
  { name = "skip-os-image-verification", emulator = "kms", check = "verify_os_image_hash (core.image.verify)",
    description = "with image verification on, callers' OS images are accepted without being downloaded and checked",
    knob = "verify_images" },
  { name = "skip-os-image-fill", emulator = "kms", check = "os_image_hash fallback (Onboard receiver, old source)",
    description = "a receiver checks an old-format source with its empty OS image hash instead of filling in its own",
    knob = "old_format_cert" },
  { name = "auth-ignore-os-image", emulator = "auth", check = "osImages",
    description = "the auth server allows a boot whatever its OS image hash" },
  { name = "auth-ignore-device", emulator = "auth", check = "devices / allowAnyDevice",
    description = "the auth server allows a boot on any device, whatever the device rules say" },
  { name = "auth-ignore-tcb-status", emulator = "auth", check = "allowedTcbStatuses, allowedAdvisoryIds",
    description = "the auth server allows a boot whatever its TCB status and advisory ids" },
}

--- Every switch { name, emulator, check, description, knob }, in the registry's order.
function M.list()
  local out = {}
  for i, s in ipairs(M.SWITCHES) do
    out[i] = { name = s.name, emulator = s.emulator, check = s.check, description = s.description, knob = s.knob }
  end
  return out
end

--- name -> description of one emulator's switches.
function M.descriptions(emulator)
  local map = {}
  for _, s in ipairs(M.SWITCHES) do if s.emulator == emulator then map[s.name] = s.description end end
  return map
end

--- The switch called name, or nil.
function M.find(name)
  for _, s in ipairs(M.SWITCHES) do if s.name == name then return s end end
end

local function names_of(list)
  if type(list) ~= "string" then return list or {} end
  local l = {}
  for name in list:gmatch("[^,%s]+") do l[#l + 1] = name end
  return l
end

--- Parses a list (or "a,b" string) of switch names of any emulator into
-- { kms = {names}, auth = {names} }, or nil, error naming the known switches.
function M.split(list)
  local out = { kms = {}, auth = {} }
  for _, name in ipairs(names_of(list)) do
    local s = M.find(name)
    if not s then
      local known = {}
      for _, k in ipairs(M.SWITCHES) do known[#known + 1] = k.name end
      return nil, "unknown mutation '" .. name .. "' (known: " .. table.concat(known, ", ") .. ")"
    end
    table.insert(out[s.emulator], name)
  end
  return out
end

--- Validates names for one emulator (a list or "a,b"); returns a set or nil, error.
function M.set(list, emulator)
  local set = {}
  for _, name in ipairs(names_of(list)) do
    local s = M.find(name)
    if not s or s.emulator ~= emulator then
      local known = {}
      for _, k in ipairs(M.SWITCHES) do if k.emulator == emulator then known[#known + 1] = k.name end end
      local where = s and (" (it is a switch of the " .. s.emulator .. " emulator)") or ""
      return nil, "unknown mutation '" .. name .. "'" .. where .. " (known: " .. table.concat(known, ", ") .. ")"
    end
    set[name] = true
  end
  return set
end

return M
