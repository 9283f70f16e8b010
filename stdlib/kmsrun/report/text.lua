-- Texts a run did not choose (an error message, a response body, a log tail) are
-- cut to a size before any sink shows them: a 50 MB error must not make a 100 MB
-- junit.xml or flood the terminal. The head and the tail are kept (the message
-- and the innermost frames of a traceback), with how much was cut between them.
-- The text is scrubbed first: a cut through a key would leave part of it that no
-- longer matches the whole.
local redact = require "kmsrun.report.redact"

local M = {}

--- Bytes kept of one text in files (report.json, junit.xml, events) and on the terminal.
M.FILE_MAX = 16 * 1024
M.TERMINAL_MAX = 4 * 1024

-- Moves i back to the start of a UTF-8 sequence, so no character is cut in half.
local function char_start(s, i)
  while i > 1 and (s:byte(i) or 0) & 0xC0 == 0x80 do i = i - 1 end
  return i
end

--- s scrubbed and, if longer than max bytes, cut to its head and tail with a note
-- of how many bytes were left out. Non-strings are returned as they are.
function M.cap(s, max)
  if type(s) ~= "string" then return s end
  s = redact.scrub(s)
  max = max or M.FILE_MAX
  if #s <= max then return s end
  local head_len = max * 3 // 4
  local tail_len = max - head_len
  local head_end = char_start(s, head_len + 1) - 1
  local tail_start = char_start(s, #s - tail_len + 1)
  local cut = tail_start - head_end - 1
  return string.format("%s\n… [%d bytes cut of %d] …\n%s", s:sub(1, head_end), cut, #s, s:sub(tail_start))
end

return M
