-- The run's mock attestation: one seed per run and the collateral service that
-- reconstructs the development PKI from it, as upstream's own e2e does
-- (dstack/tests/e2e/attestation/run-platform.sh:9, 98-119):
--
--   dstack-mock-attestation serve --listen 127.0.0.1:PORT --config tee-simulator.json --output roots/
--
-- The seeded simulators re-sign their quotes with the same PKI
-- (guest-agent-simulator/src/main.rs:58-75, simulator.rs:107-142), and each KMS trusts
-- roots/tdx-root-ca.pem and fetches collateral from the service ([core.attestation]).
-- Without this, the simulator patches the fixture quote's report data without
-- re-signing it and the KMS fails its own attestation ("Failed to verify attestation").
local fs = require "kmsrun.fs"
local http = require "kmsrun.http"
local crypto = require "kmsrun.crypto"
local json = require "kmsrun.lib.json"
local procs = require "kmsrun.targets.local.procs"

local M = {}

local PORT_RETRIES = 3
-- The readiness probe upstream's e2e uses (run-platform.sh:115-119).
local PROBE = "/tpm/aia/root.pem"

--- The run's seed: 32 bytes as 64 hex digits (mock-attestation/src/lib.rs:41-46),
-- from mock_attestation_seed or fresh for every run.
function M.seed(ctx)
  return procs.once(ctx, "seed", function()
    local given = ctx.vars.mock_attestation_seed or ""
    if given ~= "" then
      if not (#given == 64 and given:match("^%x+$")) then
        return nil, "mock_attestation_seed must be 64 hex digits (32 bytes), got " .. #given .. " characters"
      end
      return given:lower()
    end
    return crypto.hex(crypto.random(32))
  end)
end

local function address_in_use(log)
  local text = (fs.read(log) or ""):lower()
  return text:find("address already in use", 1, true) or text:find("address in use", 1, true)
end

local function launch(ctx, dir, seed, port, log)
  local url = string.format("http://127.0.0.1:%d", port)
  -- dstack_types::TeeSimulatorConfig (dstack-types/src/lib.rs:1139-1164).
  local config = dir .. "/tee-simulator.json"
  local ok, err = fs.write(config, json.encode({ platform = "dstack-tdx", mock_attestation_seed = seed,
    collateral_base_url = url }, { pretty = true }) .. "\n", { mode = 384 })
  if not ok then return nil, err end
  local bin = procs.resolve(ctx.vars.mock_attestation_binary)
  local p, serr = procs.spawn({ bin, "serve", "--listen", "127.0.0.1:" .. port, "--config", config,
    "--output", dir .. "/roots" }, { cwd = dir, stdout = log, stderr = log }, "mock_attestation_binary",
    "dstack-mock-attestation")
  if not p then return nil, serr end
  ctx:defer("stop the collateral service (" .. tostring(p) .. ")", function() p:kill(2) end,
    { kind = "process", pid = p.pid })
  local limit = tonumber(ctx.vars.collateral_timeout) or 15
  local root = dir .. "/roots/tdx-root-ca.pem"
  local ready, why = procs.await(p, function()
    if not fs.exists(root) then return false end
    local res = http.request(url .. PROBE, { timeout = 1, connect_timeout = 1, fresh = true })
    return res ~= nil and res.status == 200
  end, limit)
  if ready then return { process = p, url = url, roots = dir .. "/roots", tdx_root = root } end
  if why == "EXITED" then return nil, "EXITED", p end
  p:kill(2)
  return nil, procs.with_tail(string.format("the collateral service '%s' did not answer %s%s and write %s within %g s "
    .. "(collateral_timeout)", bin, url, PROBE, root, limit), log)
end

--- Starts the run's collateral service once; returns { url, roots, tdx_root } or nil, err.
function M.start(ctx)
  return procs.once(ctx, "collateral", function()
    local root, err = procs.workspace(ctx)
    if not root then return nil, err end
    local seed, serr = M.seed(ctx)
    if not seed then return nil, serr end
    local dir = root .. "/collateral"
    fs.mkdir(dir, { mode = 448 })
    local log = ctx.evidence:path("logs/collateral.log")
    for attempt = 1, PORT_RETRIES do
      local port, perr = procs.free_port(ctx)
      if not port then return nil, perr end
      local svc, lerr, p = launch(ctx, dir, seed, port, log)
      if svc then return svc end
      if lerr ~= "EXITED" then return nil, lerr end
      if not (address_in_use(log) and attempt < PORT_RETRIES) then
        return nil, procs.with_tail(string.format("the collateral service '%s' exited (%s) before answering",
          ctx.vars.mock_attestation_binary, tostring(p)), log)
      end
      fs.append(log, string.format("[kmsrun: port %d was taken; retrying with another free port]\n", port))
    end
  end)
end

return M
