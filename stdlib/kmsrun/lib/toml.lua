-- The TOML reader, a subset: enough for kms.toml and the files kmsrun generates.
-- Supported: comments, [tables], [[arrays of tables]], bare/quoted/dotted keys, basic and
-- literal strings (also multi-line), integers (decimal, 0x, 0o, 0b, underscores), floats,
-- booleans, arrays (multi-line, trailing comma) and inline tables.
-- Not supported: dates and times (they are rejected with a clear message).
local W = require "kmsrun.lib.json_writer"

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

local parse_value

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

local function parse_array(st)
  advance(st) -- [
  local arr = setmetatable({}, M.array_mt)
  while true do
    skip_all(st)
    if peek(st) == "]" then advance(st); return arr end
    arr[#arr + 1] = parse_value(st)
    skip_all(st)
    local c = peek(st)
    if c == "," then advance(st)
    elseif c == "]" then advance(st); return arr
    else perr(st, "expected ',' or ']' in an array") end
  end
end

local function set_path(st, root, parts, value, defined)
  local t = root
  for i = 1, #parts - 1 do
    local k = parts[i]
    if t[k] == nil then t[k] = {} end
    if type(t[k]) ~= "table" or getmetatable(t[k]) == M.array_mt then
      perr(st, "key '" .. table.concat(parts, ".", 1, i) .. "' is not a table")
    end
    t = t[k]
  end
  local last = parts[#parts]
  if t[last] ~= nil then perr(st, "duplicate key '" .. table.concat(parts, ".") .. "'") end
  t[last] = value
  if defined then defined[t] = true end
end

local function parse_inline_table(st)
  advance(st) -- {
  local t = {}
  skip_ws(st)
  if peek(st) == "}" then advance(st); return t end
  while true do
    local key = parse_key(st)
    if peek(st) ~= "=" then perr(st, "expected '=' after a key") end
    advance(st)
    skip_ws(st)
    set_path(st, t, key, parse_value(st))
    skip_ws(st)
    local c = peek(st)
    if c == "," then advance(st)
    elseif c == "}" then advance(st); return t
    else perr(st, "expected ',' or '}' in an inline table") end
  end
end

parse_value = function(st)
  skip_ws(st)
  local c = peek(st)
  if peek(st, 3) == '"""' then return basic_string(st, true) end
  if peek(st, 3) == "'''" then return literal_string(st, true) end
  if c == '"' then return basic_string(st, false) end
  if c == "'" then return literal_string(st, false) end
  if c == "[" then return parse_array(st) end
  if c == "{" then return parse_inline_table(st) end
  if st.src:find("^true", st.pos) and not st.src:find("^[%w_%-]", st.pos + 4) then advance(st, 4); return true end
  if st.src:find("^false", st.pos) and not st.src:find("^[%w_%-]", st.pos + 5) then advance(st, 5); return false end
  if c == "" or c == "\n" then perr(st, "expected a value") end
  return parse_number(st)
end

local function end_of_line(st)
  skip_ws(st)
  skip_comment(st)
  local c = peek(st)
  if c == "" then return end
  if c == "\n" then advance(st); return end
  if peek(st, 2) == "\r\n" then advance(st, 2); return end
  perr(st, "unexpected '" .. c .. "' after a value")
end

-- Walks to the table named by a header, creating it; [[x]] appends a new element.
local function open_table(st, root, parts, is_array, headers)
  local t = root
  for i = 1, #parts do
    local k = parts[i]
    local last = i == #parts
    if last and is_array then
      if t[k] == nil then t[k] = setmetatable({}, M.array_mt) end
      if getmetatable(t[k]) ~= M.array_mt then perr(st, "key '" .. table.concat(parts, ".") .. "' is not an array of tables") end
      local elem = {}
      t[k][#t[k] + 1] = elem
      return elem
    end
    if t[k] == nil then t[k] = {} end
    local v = t[k]
    if type(v) ~= "table" then perr(st, "key '" .. table.concat(parts, ".", 1, i) .. "' is not a table") end
    if getmetatable(v) == M.array_mt then v = v[#v] end -- [a.b] after [[a]] continues the last element
    t = v
  end
  if headers[t] then perr(st, "table [" .. table.concat(parts, ".") .. "] defined twice") end
  headers[t] = true
  return t
end

--- Marks arrays produced by parse (and arrays the encoder must write as arrays even when empty).
-- Arrays of tables carry the stdlib's one array marker, so a parsed document
-- encodes as JSON with its arrays intact.
M.array_mt = W.ARRAY

--- Parses TOML text; returns a table, or nil and "toml: line N: message".
function M.parse(text)
  if type(text) ~= "string" then error("toml.parse: text must be a string, got " .. type(text), 2) end
  local st = { src = text, pos = 1, line = 1 }
  if st.src:sub(1, 3) == "\239\187\191" then st.pos = 4 end
  local root, headers = {}, {}
  local current = root
  local ok, err = pcall(function()
    while st.pos <= #st.src do
      skip_all(st)
      if st.pos > #st.src then break end
      if peek(st, 2) == "[[" then
        advance(st, 2)
        local parts = parse_key(st)
        if peek(st, 2) ~= "]]" then perr(st, "expected ']]'") end
        advance(st, 2)
        current = open_table(st, root, parts, true, headers)
        end_of_line(st)
      elseif peek(st) == "[" then
        advance(st)
        local parts = parse_key(st)
        if peek(st) ~= "]" then perr(st, "expected ']'") end
        advance(st)
        current = open_table(st, root, parts, false, headers)
        end_of_line(st)
      else
        local parts = parse_key(st)
        if peek(st) ~= "=" then perr(st, "expected '=' after a key") end
        advance(st)
        set_path(st, current, parts, parse_value(st))
        end_of_line(st)
      end
    end
  end)
  if not ok then
    if type(err) == "table" and err.toml then return nil, err.msg end
    error(err, 0)
  end
  return root
end

--- Reads and parses a file; returns a table or nil, message.
function M.parse_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local t, perr_msg = M.parse(text)
  if not t then return nil, path .. ": " .. perr_msg end
  return t
end

-- The writer lives in its own file; re-exported so a caller needs one module.
local writer = require "kmsrun.lib.toml_writer"
M.encode = writer.encode
M.quote = writer.quote

return M
