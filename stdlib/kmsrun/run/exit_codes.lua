-- Exit codes of a run (docs/exit-codes.md).
local M = {
  OK = 0,            -- every selected case passed
  FAILED = 1,        -- a case failed (an expectation did not hold)
  USAGE = 2,         -- usage error, runbook error (syntax, misuse of the DSL, uncaught Lua error)
  INFRA = 3,         -- infrastructure error: an auth server, a deploy or readiness failed in setup
  TIMEOUT = 4,       -- a deadline passed (a case's, a step's, or the run's --timeout)
  CLEANUP = 5,       -- the cases passed but a cleanup action failed (something may be left behind)
  SECRET_LEAK = 6,   -- a secret was found in the output directory after writing it
  INTERRUPTED = 130, -- SIGINT or SIGTERM
}

local names = {
  [0] = "passed", [1] = "failed", [2] = "error", [3] = "infrastructure_error", [4] = "timeout",
  [5] = "cleanup_failed", [6] = "secret_leak", [130] = "interrupted",
}

function M.status(code) return names[code] or "error" end

return M
