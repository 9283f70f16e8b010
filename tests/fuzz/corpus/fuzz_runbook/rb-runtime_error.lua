runbook { description = "a Lua error inside a case" }
case("errors", function()
  local t = nil
  return t.field
end)
case("never runs", function() end)
