-- The TOML reader, a subset: enough for kms.toml and the files kmsrun generates.
-- Supported: comments, [tables], [[arrays of tables]], bare/quoted/dotted keys, basic and
-- literal strings (also multi-line), integers (decimal, 0x, 0o, 0b, underscores), floats,
-- booleans, arrays (multi-line, trailing comma) and inline tables.
-- Not supported: dates and times (they are rejected with a clear message).
local W = require "kmsrun.lib.json_writer"
local S = require "kmsrun.lib.toml_scan"

local perr, peek, advance = S.perr, S.peek, S.advance
local skip_ws, skip_comment, skip_all = S.skip_ws, S.skip_comment, S.skip_all
local basic_string, literal_string, parse_key, parse_number = S.basic_string, S.literal_string, S.parse_key, S.parse_number

local M = {}

local parse_value

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
