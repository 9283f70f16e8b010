-- Finds the global names a chunk uses, by walking Lua 5.4's grammar over the
-- tokens and tracking local scopes. Only scoping matters here, so operator
-- precedence is ignored and the source is assumed to have compiled already.
-- A global is a name not declared local in scope, not a field after "." or
-- ":", not a `name =` key inside a table constructor, not a goto label.
local lexer = require "kmsrun.cli.check.lexer"

local M = {}

local UNARY = { ["not"] = true, ["-"] = true, ["#"] = true, ["~"] = true }
local BINARY = {}
for op in ("+ - * / // % ^ .. == ~= < <= > >= and or & | ~ << >>"):gmatch("%S+") do BINARY[op] = true end
local BLOCK_END = { ["end"] = true, ["else"] = true, ["elseif"] = true, ["until"] = true, eof = true }

--- Analyses src; returns a list of references to globals, in source order:
-- {name =, line =, write = bool, field = "x" when followed by ".x", locals = {names in scope}}.
function M.globals(src)
  local toks = lexer.tokens(src)
  local pos = 1
  local scopes = { {} }
  local refs = {}

  local function peek(k) return toks[pos + (k or 0)] end
  local function advance() pos = pos + 1 return toks[pos - 1] end
  local function accept(t) if toks[pos].t == t then pos = pos + 1 return true end return false end
  local function expect(t)
    if toks[pos].t ~= t then
      error(string.format("check.scope: line %d: expected '%s' near '%s'", toks[pos].line, t, toks[pos].v), 0)
    end
    return advance()
  end

  local function open() scopes[#scopes + 1] = {} end
  local function close() scopes[#scopes] = nil end
  local function declare(name) scopes[#scopes][name] = true end
  local function is_local(name)
    for i = #scopes, 1, -1 do if scopes[i][name] then return true end end
    return false
  end
  -- The locals visible here, for "did you mean" on a misspelt local.
  local function visible()
    local list, seen = {}, {}
    for i = #scopes, 1, -1 do
      for n in pairs(scopes[i]) do if not seen[n] then seen[n] = true; list[#list + 1] = n end end
    end
    table.sort(list)
    return list
  end
  local function reference(tok, write, field)
    if not is_local(tok.v) then
      refs[#refs + 1] = { name = tok.v, line = tok.line, write = write, field = field, locals = visible() }
    end
  end

  local block, expr, explist, funcbody

  local function constructor()
    expect("{")
    while peek().t ~= "}" do
      if peek().t == "[" then
        advance(); expr(); expect("]"); expect("="); expr()
      elseif peek().t == "name" and peek(1).t == "=" then
        advance(); advance(); expr()
      else
        expr()
      end
      if not accept(",") then accept(";") end
    end
    expect("}")
  end

  local function callargs()
    local t = peek().t
    if t == "string" then advance()
    elseif t == "{" then constructor()
    else
      expect("(")
      if peek().t ~= ")" then explist() end
      expect(")")
    end
  end

  -- Returns the name token when the expression is a bare name (no suffix), so an
  -- assignment can tell `x = 1` (a write of x) from `x.y = 1` (a read of x).
  local function suffixedexp()
    local bare
    if peek().t == "name" then
      bare = advance()
    else
      expect("("); expr(); expect(")")
    end
    while true do
      local t = peek().t
      if t == "." then
        advance()
        local field = expect("name")
        if bare then reference(bare, false, field.v); bare = nil end
      elseif t == "[" or t == ":" or t == "(" or t == "{" or t == "string" then
        if bare then reference(bare, false); bare = nil end
        if t == "[" then advance(); expr(); expect("]")
        elseif t == ":" then advance(); expect("name"); callargs()
        else callargs() end
      else
        return bare
      end
    end
  end

  local function simpleexp()
    local t = peek().t
    if t == "number" or t == "string" or t == "nil" or t == "true" or t == "false" or t == "..." then
      advance()
    elseif t == "{" then
      constructor()
    elseif t == "function" then
      advance(); funcbody(false)
    else
      local bare = suffixedexp()
      if bare then reference(bare, false) end
    end
  end

  function expr()
    while UNARY[peek().t] do advance() end
    simpleexp()
    while BINARY[peek().t] do
      advance()
      while UNARY[peek().t] do advance() end
      simpleexp()
    end
  end

  function explist()
    expr()
    while accept(",") do expr() end
  end

  function funcbody(is_method)
    open()
    if is_method then declare("self") end
    expect("(")
    while peek().t ~= ")" do
      if peek().t == "..." then advance() else declare(expect("name").v) end
      accept(",")
    end
    expect(")")
    block()
    expect("end")
    close()
  end

  local function local_statement()
    if accept("function") then
      declare(expect("name").v) -- visible inside its own body (recursion)
      funcbody(false)
      return
    end
    local names = {}
    repeat
      names[#names + 1] = expect("name").v
      if accept("<") then expect("name"); expect(">") end
    until not accept(",")
    if accept("=") then explist() end
    -- Declared only after the expressions: in `local x = x` the right x is the outer one.
    for _, n in ipairs(names) do declare(n) end
  end

  local function for_statement()
    local names = { expect("name").v }
    if accept("=") then
      expr(); expect(","); expr()
      if accept(",") then expr() end
    else
      while accept(",") do names[#names + 1] = expect("name").v end
      expect("in")
      explist()
    end
    expect("do")
    open()
    for _, n in ipairs(names) do declare(n) end
    block()
    close()
    expect("end")
  end

  local function function_statement()
    local first = expect("name")
    local method = false
    if peek().t == "." or peek().t == ":" then
      reference(first, false, peek(1).v)
      while accept(".") do expect("name") end
      if accept(":") then expect("name"); method = true end
    else
      reference(first, true)
    end
    funcbody(method)
  end

  local function expression_statement()
    local bare = suffixedexp()
    if peek().t == "=" or peek().t == "," then
      local targets = { bare }
      while accept(",") do targets[#targets + 1] = suffixedexp() or false end
      expect("=")
      explist()
      for _, tok in ipairs(targets) do if tok then reference(tok, true) end end
    elseif bare then
      reference(bare, false) -- not valid Lua on its own; kept for completeness
    end
  end

  local function statement()
    local t = peek().t
    if t == ";" or t == "break" then advance()
    elseif t == "::" then advance(); expect("name"); expect("::")
    elseif t == "goto" then advance(); expect("name")
    elseif t == "do" then advance(); block(); expect("end")
    elseif t == "while" then advance(); expr(); expect("do"); block(); expect("end")
    elseif t == "repeat" then
      -- The `until` condition sees the loop body's locals.
      advance(); open()
      while not BLOCK_END[peek().t] do statement() end
      expect("until"); expr(); close()
    elseif t == "if" then
      advance(); expr(); expect("then"); block()
      while accept("elseif") do expr(); expect("then"); block() end
      if accept("else") then block() end
      expect("end")
    elseif t == "for" then advance(); for_statement()
    elseif t == "function" then advance(); function_statement()
    elseif t == "local" then advance(); local_statement()
    elseif t == "return" then
      advance()
      if not BLOCK_END[peek().t] and peek().t ~= ";" then explist() end
      accept(";")
    else
      expression_statement()
    end
  end

  function block()
    open()
    while not BLOCK_END[peek().t] do statement() end
    close()
  end

  block()
  return refs
end

return M
