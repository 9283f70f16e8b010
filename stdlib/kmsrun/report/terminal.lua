-- The terminal as a redacted sink, like every file of the output directory: once
-- installed (cli/main.lua, before any runbook is loaded), io.stdout, io.stderr,
-- io.write and print — the runbook's print included — scrub every secret
-- (report/redact.lua) and escape control characters, and the host writes its own
-- error texts (an uncaught error, a failing HTTP handler) through the same path
-- (core.set_error_writer). CI keeps stdout: a key must not reach it in any form.
local redact = require "kmsrun.report.redact"

local M = {}

local real = { stdout = io.stdout, stderr = io.stderr }

-- C0 controls but newline and tab, and DEL: an ESC sequence from a server's answer
-- or a case name could rewrite the terminal (hide a line, fake a PASS). \r and
-- \u001b are readable, and valid JSON escapes (an --events - line stays valid).
local function escape_byte(c)
  if c == "\r" then return "\\r" end
  return string.format("\\u%04x", c:byte())
end

--- Text with control characters (but \n and \t) shown as escapes.
function M.escape(s)
  return (s:gsub("[%z\1-\8\11-\31\127]", escape_byte))
end

--- What a sink shows of text: secrets scrubbed, controls escaped (opts.raw: not escaped).
function M.clean(text, opts)
  text = redact.scrub(text)
  if not (opts and opts.raw) then text = M.escape(text) end
  return text
end

local Stream = {}

local function concat(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) ~= "string" and type(v) ~= "number" then
      error(string.format("bad argument #%d to 'write' (string expected, got %s)", i, type(v)), 3)
    end
    parts[i] = tostring(v)
  end
  return table.concat(parts)
end

function Stream:write(...)
  local ok, err, code = self.file:write(M.clean(concat(...), self.opts))
  if not ok then return nil, err, code end
  return self
end

--- Writes text already scrubbed value by value (an --events line): scrubbing the
-- encoded text again could cut its syntax.
function Stream:write_scrubbed(text)
  local ok, err, code = self.file:write(text)
  if not ok then return nil, err, code end
  return self
end

local stream_mt = {
  __index = function(self, k)
    local m = Stream[k]
    if m then return m end
    -- Everything else (flush, setvbuf, seek, close) is the file's own.
    local f = rawget(self, "file")
    local fn = f[k]
    if type(fn) ~= "function" then return fn end
    return function(_, ...) return fn(f, ...) end
  end,
  __name = "kmsrun.terminal",
  __tostring = function(self) return tostring(rawget(self, "file")) end,
}

local function wrap(file, opts)
  return setmetatable({ file = file, opts = opts }, stream_mt)
end

local installed

--- Routes the process's terminal output through the scrubber. opts.raw: do not
-- escape control characters (`kmsrun script` and `serve` speak their own formats).
function M.install(opts)
  if installed then return end
  installed = true
  io.stdout = wrap(real.stdout, opts)
  io.stderr = wrap(real.stderr, opts)
  io.write = function(...) return io.stdout:write(...) end
  _G.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    io.stdout:write(table.concat(parts, "\t"), "\n")
  end
  local core = require "kmsrun.core"
  if core.set_error_writer then
    core.set_error_writer(function(text) io.stderr:write(text) io.stderr:flush() end)
  end
end

--- The unwrapped files (tests).
M.real = real

return M
