-- A small unified diff of two texts (line based, longest common subsequence),
-- for the evidence of each policy flip. Policies are tens of lines.
local M = {}

local function lines(text)
  local out = {}
  for l in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do out[#out + 1] = l end
  if text == "" then out = {} end
  return out
end

--- Unified-style diff of a -> b (all lines, no hunks: small inputs).
function M.unified(a, b, label_a, label_b)
  local x, y = lines(a), lines(b)
  local n, m = #x, #y
  local L = {}
  for i = n + 1, 1, -1 do
    L[i] = {}
    for j = m + 1, 1, -1 do
      if i > n or j > m then L[i][j] = 0
      elseif x[i] == y[j] then L[i][j] = L[i + 1][j + 1] + 1
      else L[i][j] = math.max(L[i + 1][j], L[i][j + 1]) end
    end
  end
  local out = { "--- " .. (label_a or "a"), "+++ " .. (label_b or "b") }
  local i, j = 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and x[i] == y[j] then
      out[#out + 1] = " " .. x[i]; i, j = i + 1, j + 1
    elseif j <= m and (i > n or L[i][j + 1] >= L[i + 1][j]) then
      out[#out + 1] = "+" .. y[j]; j = j + 1
    else
      out[#out + 1] = "-" .. x[i]; i = i + 1
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
