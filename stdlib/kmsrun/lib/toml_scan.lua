-- The TOML reader's scanner: positions and line numbers, whitespace and comments,
-- strings (basic and literal, single- and multi-line, escapes), keys and numbers.
-- lib/toml.lua builds tables from what it scans. Errors are raised as
-- { toml = true, msg = "toml: line N: ..." }, which toml.parse turns into nil, msg.
local M = {}

local function perr(st, msg)
  error({ toml = true, msg = string.format("toml: line %d: %s", st.line, msg) }, 0)
end

local function peek(st, n) return st.src:sub(st.pos, st.pos + (n or 1) - 1) end
local function advance(st, n)
  local s = st.src:sub(st.pos, st.pos + (n or 1) - 1)
  for _ in s:gmatch("\n") do st.line = st.line + 1 end
  st.pos = st.pos + (n or 1)
end

-- Spaces and tabs only (newlines are significant between key/value pairs).
local function skip_ws(st)
  local s, e = st.src:find("^[ \t]+", st.pos)
  if s then st.pos = e + 1 end
end

local function skip_comment(st)
  if peek(st) == "#" then
    local e = st.src:find("\n", st.pos, true)
    st.pos = e or (#st.src + 1)
  end
end

-- Whitespace, newlines and comments (inside arrays).
local function skip_all(st)
  while true do
    skip_ws(st)
    local c = peek(st)
    if c == "#" then skip_comment(st)
    elseif c == "\n" then advance(st)
    elseif c == "\r" and peek(st, 2) == "\r\n" then advance(st, 2)
    else return end
  end
end

local function utf8_of(st, hex)
  local cp = tonumber(hex, 16)
  if not cp or (cp >= 0xD800 and cp <= 0xDFFF) or cp > 0x10FFFF then
    perr(st, "invalid unicode escape \\u" .. hex)
  end
  return utf8.char(cp)
end

local escapes = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

local function basic_string(st, multiline)
  local q = multiline and '"""' or '"'
  advance(st, #q)
  if multiline then -- a newline right after the opening delimiter is trimmed
    if peek(st) == "\n" then advance(st) elseif peek(st, 2) == "\r\n" then advance(st, 2) end
  end
  local out = {}
  while true do
    if st.pos > #st.src then perr(st, "unterminated string") end
    if multiline and peek(st, 3) == '"""' then
      -- up to two extra quotes may precede the closing delimiter
      local extra = 0
      while peek(st, 3 + extra + 1):sub(-1) == '"' and extra < 2 do extra = extra + 1 end
      out[#out + 1] = string.rep('"', extra)
      advance(st, 3 + extra)
      break
    end
    local c = peek(st)
    if not multiline and c == '"' then advance(st); break end
    if c == "\\" then
      local n = st.src:sub(st.pos + 1, st.pos + 1)
      if escapes[n] then
        out[#out + 1] = escapes[n]; advance(st, 2)
      elseif n == "u" or n == "U" then
        local len = n == "u" and 4 or 8
        local hex = st.src:sub(st.pos + 2, st.pos + 1 + len)
        if not hex:match("^%x+$") or #hex ~= len then perr(st, "invalid unicode escape") end
        out[#out + 1] = utf8_of(st, hex); advance(st, 2 + len)
      elseif multiline and (n == "\n" or n == " " or n == "\t" or n == "\r") then
        -- line-ending backslash: trim the newline and following whitespace
        advance(st, 1)
        while true do
          local d = peek(st)
          if d == " " or d == "\t" or d == "\n" or d == "\r" then advance(st) else break end
        end
      else
        perr(st, "invalid escape \\" .. n)
      end
    elseif c == "\n" and not multiline then
      perr(st, "newline in a single-line string")
    else
      out[#out + 1] = c; advance(st)
    end
  end
  return table.concat(out)
end

local function literal_string(st, multiline)
  local q = multiline and "'''" or "'"
  advance(st, #q)
  if multiline then
    if peek(st) == "\n" then advance(st) elseif peek(st, 2) == "\r\n" then advance(st, 2) end
  end
  local e = st.src:find(q, st.pos, true)
  if not e then perr(st, "unterminated string") end
  if multiline then
    while st.src:sub(e + 3, e + 3) == "'" and e - st.pos < #st.src do e = e + 1 end
  end
  local s = st.src:sub(st.pos, e - 1)
  if not multiline and s:find("\n") then perr(st, "newline in a single-line string") end
  advance(st, e - st.pos + #q)
  return s
end

local function parse_key_part(st)
  local c = peek(st)
  if c == '"' then return basic_string(st, false) end
  if c == "'" then return literal_string(st, false) end
  local s, e = st.src:find("^[A-Za-z0-9_%-]+", st.pos)
  if not s then perr(st, "expected a key") end
  st.pos = e + 1
  return st.src:sub(s, e)
end

local function parse_key(st)
  local parts = {}
  while true do
    skip_ws(st)
    parts[#parts + 1] = parse_key_part(st)
    skip_ws(st)
    if peek(st) ~= "." then return parts end
    advance(st)
  end
end

local function parse_number(st)
  local s, e = st.src:find("^[%+%-]?[0-9A-Za-z_%.%+%-]+", st.pos)
  if not s then perr(st, "expected a value") end
  local raw = st.src:sub(s, e)
  st.pos = e + 1
  if raw:match("^%d%d%d%d%-%d%d%-%d%d") or raw:match("^%d%d:%d%d") then
    perr(st, "dates and times are not supported")
  end
  if raw == "inf" or raw == "+inf" then return math.huge end
  if raw == "-inf" then return -math.huge end
  if raw:match("^[%+%-]?nan$") then return 0 / 0 end
  if raw:find("__") or raw:match("^_") or raw:match("_$") then perr(st, "invalid number " .. raw) end
  local clean = raw:gsub("_", "")
  local prefix, digits = clean:match("^0([xob])(.+)$")
  if prefix then
    local base = ({ x = 16, o = 8, b = 2 })[prefix]
    local v = tonumber(digits, base)
    if not v then perr(st, "invalid number " .. raw) end
    return math.tointeger(v)
  end
  if clean:match("^[%+%-]?%d+$") then
    if clean:match("^[%+%-]?0%d") then perr(st, "leading zeros are not allowed: " .. raw) end
    local v = math.tointeger(tonumber(clean))
    if not v then perr(st, "integer out of range: " .. raw) end
    return v
  end
  if clean:match("^[%+%-]?%d+%.?%d*[eE]?[%+%-]?%d*$") and not clean:match("%.$") then
    local v = tonumber(clean)
    if v then return v + 0.0 end
  end
  perr(st, "invalid value " .. raw)
end

M.perr = perr
M.peek = peek
M.advance = advance
M.skip_ws = skip_ws
M.skip_comment = skip_comment
M.skip_all = skip_all
M.basic_string = basic_string
M.literal_string = literal_string
M.parse_key = parse_key
M.parse_number = parse_number

return M
