-- SCALE (parity-scale-codec) encoding of the few shapes a signing request uses: compact
-- lengths, strings and byte vectors, bools, Option<_> and little-endian u64. A reader keeps
-- its position and fails with "Codec error", which is all parity-scale-codec says about
-- malformed input.
local M = {}

M.CODEC_ERROR = "Codec error"

--- Compact encoding of a non-negative integer below 2^30 (the lengths used here).
function M.compact(n)
  assert(math.type(n) == "integer" and n >= 0 and n < 0x40000000, "scale.compact: integer out of range")
  if n < 0x40 then return string.char(n << 2) end
  if n < 0x4000 then return string.pack("<I2", (n << 2) | 1) end
  return string.pack("<I4", (n << 2) | 2)
end

function M.bytes(s) return M.compact(#s) .. s end
M.str = M.bytes
function M.bool(b) return b and "\1" or "\0" end
function M.u64(n) return string.pack("<I8", n) end

--- Option<T>: 0 for None, 1 then the encoded value for Some.
function M.option(v, enc) if v == nil then return "\0" end return "\1" .. enc(v) end

--- Vec<T>: compact count, then each element.
function M.vec(list, enc)
  local parts = { M.compact(#list) }
  for i, v in ipairs(list) do parts[i + 1] = enc(v) end
  return table.concat(parts)
end

local Reader = {}
Reader.__index = Reader

--- A reader over data; every read returns the value or raises { scale = true }.
function M.reader(data) return setmetatable({ data = data, pos = 1 }, Reader) end

local function fail() error({ scale = true }, 0) end

function Reader:take(n)
  if self.pos + n - 1 > #self.data then fail() end
  local s = self.data:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

function Reader:compact()
  local b = self.data:byte(self.pos) or fail()
  local mode = b & 3
  if mode == 0 then self.pos = self.pos + 1; return b >> 2 end
  if mode == 1 then return string.unpack("<I2", self:take(2)) >> 2 end
  if mode == 2 then return string.unpack("<I4", self:take(4)) >> 2 end
  fail() -- big-integer mode: no length here is that long
end

function Reader:bytes() return self:take(self:compact()) end
Reader.str = Reader.bytes

function Reader:bool()
  local b = self:take(1):byte()
  if b > 1 then fail() end
  return b == 1
end

function Reader:u64() return (string.unpack("<I8", self:take(8))) end

function Reader:option(read)
  if self:bool() then return read(self) end
  return nil
end

function Reader:vec(read)
  local out = {}
  for i = 1, self:compact() do out[i] = read(self) end
  return out
end

function Reader:done() return self.pos > #self.data end

--- Runs fn(reader) over data; returns its value or nil, "Codec error". Trailing bytes are
-- an error only when strict (Decode::decode ignores them; decode_all does not).
function M.decode(data, fn, strict)
  local r = M.reader(data)
  local ok, v = pcall(fn, r)
  if not ok then
    if type(v) == "table" and v.scale then return nil, M.CODEC_ERROR end
    error(v, 0)
  end
  if strict and not r:done() then return nil, M.CODEC_ERROR end
  return v
end

return M
