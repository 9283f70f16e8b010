runbook { description = "a secret too short to be scrubbed" }
case("short", function()
  secret("ab")
end)
