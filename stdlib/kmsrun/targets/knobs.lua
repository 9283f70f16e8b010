-- kms() options that only the emulator can honour (device, tcb_status, advisories,
-- old_format_cert, verify_images): a real KMS's device and TCB are the hardware's, not a setting. A
-- target other than sim refuses them at deploy instead of silently ignoring them.
local M = {}

M.EMULATOR_ONLY = { "device", "tcb_status", "advisories", "old_format_cert", "verify_images" }

--- nil, or the error for a kms handle declared with an emulator-only option.
function M.refuse(h, target)
  for _, k in ipairs(M.EMULATOR_ONLY) do
    if h.spec[k] ~= nil then
      return string.format("kms %s: option %s is an emulator knob, not available on the %s target "
        .. "(a real KMS's %s comes from its hardware); run this case on sim", h.name, k, target,
        k == "old_format_cert" and "certificate format comes from its version" or k)
    end
  end
end

return M
