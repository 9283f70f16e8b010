-- A Lua 5.4 tokenizer for `kmsrun check`'s static pass. Lua 5.4 exposes no
-- bytecode listing here (no `luac -l`), so finding global names means reading
-- the source. The text has already compiled with load(), so the lexer may
-- assume it is well formed and needs no error recovery.
local M = {}

local KEYWORDS = {}
for k in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do KEYWORDS[k] = true end

-- Longest symbols first, so "..." wins over ".." and ".".
local SYMBOLS = { "...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::" }

local function count_lines(s) local _, n = s:gsub("\n", "") return n end

-- The end of a long bracket opened at i ("[[", "[==["); returns the index after it.
local function long_bracket_end(src, i)
  local eqs = src:match("^%[(=*)%[", i)
  if not eqs then return nil end
  local close = "]" .. eqs .. "]"
  local _, e = src:find(close, i + #eqs + 2, true)
  return (e or #src) + 1
end

--- Tokenizes src into a list of {t = kind, v = text, line = n}. kind is "name",
-- "string", "number", "eof", or the keyword / symbol itself ("local", "=", "(").
function M.tokens(src)
  local toks, i, line, n = {}, 1, 1, #src
  if src:sub(1, 1) == "#" then i = (src:find("\n", 1, true) or n + 1) end -- shebang line
  local function push(t, v) toks[#toks + 1] = { t = t, v = v, line = line } end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line, i = line + 1, i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local e = long_bracket_end(src, i + 2)
      if not e then e = (src:find("\n", i, true) or n + 1) end
      line = line + count_lines(src:sub(i, e - 1))
      i = e
    elseif c:match("[%a_]") then
      local word = src:match("^[%w_]+", i)
      push(KEYWORDS[word] and word or "name", word)
      i = i + #word
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local num = src:match("^0[xX][%x%.]*[pP][+-]?%d+", i) or src:match("^0[xX][%x%.]*", i)
        or src:match("^%d*%.?%d*[eE][+-]?%d+", i) or src:match("^%d*%.?%d*", i)
      push("number", num)
      i = i + #num
    elseif c == '"' or c == "'" then
      local start, j = line, i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then
          if src:sub(j + 1, j + 1) == "\n" then line = line + 1 end
          j = j + 2
        elseif d == c or d == "\n" then
          break
        else
          j = j + 1
        end
      end
      toks[#toks + 1] = { t = "string", v = src:sub(i + 1, j - 1), line = start }
      i = j + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local e = long_bracket_end(src, i)
      local body = src:sub(i, e - 1)
      push("string", body)
      line = line + count_lines(body)
      i = e
    else
      local sym = c
      for _, s in ipairs(SYMBOLS) do
        if src:sub(i, i + #s - 1) == s then sym = s break end
      end
      push(sym, sym)
      i = i + #sym
    end
  end
  push("eof", "")
  return toks
end

return M
