runbook { description = "a runbook with a syntax error on line 3" }
case("broken", function()
  local x = = 1
end)
