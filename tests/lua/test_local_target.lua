-- The local target: a dstack-kms binary (here kmsrun's KMS emulator behind
-- tests/fakes/dstack-kms-emulator.sh) next to a simulator (a stand-in that
-- creates ./dstack.sock): guest-agent addressing, ports, and the clear early
-- errors for missing binaries, a simulator that never comes up, a taken port.
local T = require "kmsrun.lib.testing"
local H = dofile((os.getenv("KMSRUN_SOURCE_DIR") or "../..") .. "/tests/fakes/harness.lua")
local fs = require "kmsrun.fs"
local server = require "kmsrun.lib.http_server"
local json = require "kmsrun.lib.json"
local toml = require "kmsrun.lib.toml"

local KMS = H.SRC .. "/tests/fakes/dstack-kms-emulator.sh"
local SIM = H.SRC .. "/tests/fakes/dstack-simulator-standin.sh"
local MOCK = H.SRC .. "/tests/fakes/dstack-mock-attestation-standin.sh"
local FIXTURES = H.SRC .. "/tests/fakes/simulator"
local ENV = { KMSRUN = H.EXE }

local function local_args(over, rb)
  local vars = { kms_binary = KMS, simulator_binary = SIM, mock_attestation_binary = MOCK, simulator_dir = FIXTURES }
  for k, v in pairs(over or {}) do vars[k] = v end
  local args = { "--target", "local" }
  for k, v in pairs(vars) do
    args[#args + 1] = "--var"
    args[#args + 1] = k .. "=" .. v
  end
  args[#args + 1] = rb or H.one_kms_runbook()
  return args
end

local function script(body)
  local path = H.tmpdir("fake-bin") .. "/bin.sh"
  assert(fs.write(path, "#!/bin/sh\n" .. body .. "\n", { mode = 493 }))
  return path
end

T.test("one KMS against the simulator: the guest agent is the simulator's ./dstack.sock", function()
  local r = H.kmsrun(local_args(), { env = ENV })
  T.eq(r.code, 0, r.output)
  local log = fs.read(r.out .. "/logs/kms-one.log") or ""
  T.ok(not log:find("no guest agent", 1, true), "attestation available:\n" .. log)
end)

T.test("attestation=false: DSTACK_AGENT_ADDRESS names a socket that does not exist", function()
  local r = H.kmsrun(local_args(nil, H.one_kms_runbook { attestation = false }), { env = ENV })
  T.eq(r.code, 0, r.output)
  T.contains(fs.read(r.out .. "/logs/kms-one.log") or "", "no guest agent")
  T.ok(not fs.exists(r.out .. "/logs/simulator-kms-one.log"), "no simulator needed")
  T.ok(not fs.exists(r.out .. "/logs/collateral.log"), "no collateral service needed")
end)

T.test("a missing KMS binary: the error names the binary and the variable", function()
  local r = H.kmsrun(local_args { kms_binary = "/nonexistent/dstack-kms" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "cannot run dstack-kms '/nonexistent/dstack-kms'")
  T.contains(r.output, "--var kms_binary=/path/to/dstack-kms")
end)

T.test("a KMS binary that is not executable: EACCES, with the variable", function()
  local path = H.tmpdir("not-exec") .. "/dstack-kms"
  assert(fs.write(path, "#!/bin/sh\n", { mode = 420 }))
  local r = H.kmsrun(local_args { kms_binary = path }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "cannot run dstack-kms '" .. path .. "'")
  T.contains(r.output, "ermission denied")
  T.contains(r.output, "kms_binary")
end)

T.test("a missing simulator: the error names the variable", function()
  local r = H.kmsrun(local_args { simulator_binary = "/nonexistent/dstack-simulator" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "cannot run dstack-simulator '/nonexistent/dstack-simulator'")
  T.contains(r.output, "--var simulator_binary=")
end)

T.test("a simulator that never creates its socket, or exits, is reported with its log", function()
  local silent = script("echo 'simulator: waiting for nothing'\nexec sleep 30")
  local r = H.kmsrun(local_args { simulator_binary = silent, simulator_timeout = "0.5" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "did not create")
  T.contains(r.output, "dstack.sock within 0.5 s (simulator_timeout)")
  T.contains(r.output, "simulator: waiting for nothing")
  local quitter = script("echo 'cannot read dstack.toml' >&2\nexit 1")
  r = H.kmsrun(local_args { simulator_binary = quitter }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "exited")
  T.contains(r.output, "cannot read dstack.toml")
end)

T.test("the simulator runs in a private directory with a copy of its files", function()
  local dir = H.tmpdir("simulator-dir")
  assert(fs.write(dir .. "/dstack.toml", "[default]\n"))
  assert(fs.write(dir .. "/sys-config.json", "{}"))
  assert(fs.write(dir .. "/attestation.bin", "stand-in"))
  assert(fs.write(dir .. "/appkeys.json", "{}"))
  -- A stand-in that insists on finding the copied files in its working directory.
  local sim = script('[ -f dstack.toml ] && [ -f sys-config.json ] || { echo "fixtures missing in $PWD" >&2; exit 1; }\nexec "'
    .. SIM .. '"')
  local r = H.kmsrun(local_args { simulator_binary = sim, simulator_dir = dir }, { env = ENV })
  T.eq(r.code, 0, r.output)
  T.ok(not fs.exists(dir .. "/dstack.sock"), "the socket is not created in the user's directory")
end)

T.test("a taken port in local_ports is reported before starting anything", function()
  local busy = assert(server.listen(function() return 200, "busy" end, { port = 0 }))
  local r = H.kmsrun(local_args { local_ports = tostring(busy.port) }, { env = ENV })
  busy:close()
  T.eq(r.code, 3, r.output)
  T.contains(r.output, string.format("port %d for kms-one (local_ports) is not free", busy.port))
  T.contains(r.output, "another process uses it")
end)

T.test("a free port taken in the meantime ('address in use') is retried with another one", function()
  local marker = H.tmpdir("retry") .. "/tried"
  -- First start: fail the way a KMS does when its port was taken; then behave.
  local kms = script(string.format(
    '[ -e %q ] || { touch %q; echo "Error: Address already in use (os error 98)" >&2; exit 1; }\nexec %q "$@"',
    marker, marker, KMS))
  local r = H.kmsrun(local_args { kms_binary = kms }, { env = ENV })
  T.eq(r.code, 0, r.output)
  T.contains(fs.read(r.out .. "/logs/kms-one.log") or "", "retrying with another free port")
end)

-- Attestation set-up (collateral.lua, simulator.lua) --------------------------------------

-- A wrapper that records its arguments and working directory, then runs the real stand-in.
local function recorder(target, record)
  return script(string.format('{ echo "cwd=$PWD"; for a in "$@"; do echo "arg=$a"; done; } > %q\nexec %q "$@"',
    record, target))
end

T.test("the simulator runs as '-c <dir>/dstack.toml' with the run's seed; the collateral service with the same seed", function()
  local rec = H.tmpdir("rec")
  local sim = recorder(SIM, rec .. "/sim")
  -- Also keep what the simulator and collateral service were given (the work dir is removed at the end).
  local sim_keep = script(string.format('cp dstack.toml %q; exec %q "$@"', rec .. "/dstack.toml", sim))
  local mock = script(string.format('prev=; for a in "$@"; do [ "$prev" = --config ] && cp "$a" %q; prev=$a; done; exec %q "$@"',
    rec .. "/tee-simulator.json", MOCK))
  local kms = script(string.format('cp "$2" %q; exec %q "$@"', rec .. "/kms.toml", KMS))
  local r = H.kmsrun(local_args { simulator_binary = sim_keep, mock_attestation_binary = mock, kms_binary = kms }, { env = ENV })
  T.eq(r.code, 0, r.output)
  local args = fs.read(rec .. "/sim") or ""
  local cwd = args:match("cwd=([^\n]+)")
  T.ok(cwd and cwd:match("/simulator%-kms%-one$"), "its own directory: " .. args)
  T.contains(args, "arg=-c\narg=" .. cwd .. "/dstack.toml\n")
  local seed = (fs.read(rec .. "/dstack.toml") or ""):match('mock_attestation_seed = "(%x+)"')
  T.eq(seed and #seed, 64, "a 32-byte seed in [default.core.simulator]")
  local tee = json.decode(fs.read(rec .. "/tee-simulator.json") or "")
  T.eq(tee.mock_attestation_seed, seed, "the collateral service reconstructs the same PKI")
  T.eq(tee.platform, "dstack-tdx")
  local cfg = assert(toml.parse(fs.read(rec .. "/kms.toml") or ""))
  T.eq(cfg.core.attestation.insecure_allow_external_trust_anchors, true)
  T.eq(cfg.core.attestation.urls.pccs, tee.collateral_base_url)
  T.match(cfg.core.attestation.root_ca.tdx, "/collateral/roots/tdx%-root%-ca%.pem$")
  T.ok(not (fs.read(r.out .. "/report.json") or ""):find(seed, 1, true), "the seed is not in the report")
  -- A second run gets another seed.
  local r2 = H.kmsrun(local_args { simulator_binary = sim_keep, mock_attestation_binary = mock, kms_binary = kms }, { env = ENV })
  T.eq(r2.code, 0, r2.output)
  T.ok((fs.read(rec .. "/dstack.toml") or ""):match('mock_attestation_seed = "(%x+)"') ~= seed, "a seed per run")
end)

T.test("the collateral service: exits, never answers, or a bad seed: clear deploy errors", function()
  local quitter = script("echo 'Error: mock_attestation_seed missing' >&2\nexit 1")
  local r = H.kmsrun(local_args { mock_attestation_binary = quitter }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "the collateral service '" .. quitter .. "' exited")
  T.contains(r.output, "Error: mock_attestation_seed missing")
  local mute = script("exec sleep 30")
  r = H.kmsrun(local_args { mock_attestation_binary = mute, collateral_timeout = "0.5" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "/tpm/aia/root.pem and write ")
  T.contains(r.output, "within 0.5 s (collateral_timeout)")
  r = H.kmsrun(local_args { mock_attestation_seed = "abc" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "mock_attestation_seed must be 64 hex digits (32 bytes), got 3 characters")
  r = H.kmsrun(local_args { mock_attestation_binary = "/nonexistent/dstack-mock-attestation" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "give --var mock_attestation_binary=/path/to/dstack-mock-attestation")
end)

T.test("an /etc/kms/kms.toml on the host is named in a warning (dstack-kms merges it under ours)", function()
  local etc = H.tmpdir("etc-kms")
  assert(fs.write(etc .. "/kms.toml", "[core]\n"))
  local env = { KMSRUN = H.EXE, KMSRUN_LOCAL_ETC_DIR = etc }
  local r = H.kmsrun(local_args(), { env = env })
  T.eq(r.code, 0, r.output)
  T.contains(r.output, "warning: " .. etc .. "/kms.toml exists; dstack-kms merges it under kmsrun's kms.toml")
  r = H.kmsrun(local_args(), { env = { KMSRUN = H.EXE, KMSRUN_LOCAL_ETC_DIR = etc .. "/none" } })
  T.ok(not r.output:find("merges it under", 1, true), r.output)
end)

T.test("simulator_dirs and simulator_vm_config are checked", function()
  local r = H.kmsrun(local_args { simulator_dirs = "kms-one=/nonexistent/fixtures" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "simulator_dirs: '/nonexistent/fixtures' (for kms-one) is not a directory")
  r = H.kmsrun(local_args { simulator_dirs = "kms-one" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "simulator_dirs: 'kms-one' is not KMS=DIR")
  r = H.kmsrun(local_args { simulator_vm_config = "both" }, { env = ENV })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "simulator_vm_config must be 'attested' or 'keep', not 'both'")
end)

T.test("a work directory too deep for a Unix socket path is reported before starting the simulator", function()
  local deep = H.tmpdir("deep") .. "/" .. string.rep("d", 90)
  assert(fs.mkdir(deep))
  local r = H.kmsrun(local_args(), { env = { KMSRUN = H.EXE, TMPDIR = deep } })
  T.eq(r.code, 3, r.output)
  T.contains(r.output, "more than a Unix socket allows (107); set TMPDIR to a shorter directory")
end)

T.test("cleanup", function() H.cleanup() end)
