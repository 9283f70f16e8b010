-- Issue 12, point 2: the output directory is created by the run, owned by it and
-- never followed out of. Each test is a repro: the exit code, and nothing written
-- or read outside the output directory.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local H = dofile(here .. "/harness.lua")

local PASSING = [[
runbook { description = "passes" }
case("one", function() log("fine") end)
]]

local function victim(dir, content)
  local p = dir .. "/victim"
  assert(fs.write(p, content or "untouched", { mode = 420 }))
  return p
end

T.test("a new --out is created owner-only (0700) and holds one run", function()
  local d = H.workdir("new")
  local rb = H.runbook(d, "ok", PASSING)
  local code, log = H.run(d, { "--out", d .. "/out/nested", rb })
  T.eq(code, 0, log)
  T.eq(fs.stat(d .. "/out/nested").mode, 448)
  T.eq(fs.stat(d .. "/out").mode, 448, "missing parents too")
  H.cleanup(d)
end)

T.test("an existing empty --out is adopted and made 0700", function()
  local d = H.workdir("empty")
  fs.mkdir(d .. "/out", { mode = 493 })
  local code, log = H.run(d, { "--out", d .. "/out", H.runbook(d, "ok", PASSING) })
  T.eq(code, 0, log)
  T.eq(fs.stat(d .. "/out").mode, 448)
  H.cleanup(d)
end)

T.test("an existing non-empty --out that is not a kmsrun output is refused, untouched", function()
  local d = H.workdir("nonempty")
  fs.mkdir(d .. "/home/.ssh")
  assert(fs.write(d .. "/home/.ssh/id_ed25519", "PRIVATE", { mode = 384 }))
  local code, log = H.run(d, { "--out", d .. "/home", H.runbook(d, "ok", PASSING) })
  T.eq(code, 2, log)
  T.contains(log, "is not empty")
  T.eq(H.tree(d .. "/home"), { ".ssh", ".ssh/id_ed25519" }, "nothing added, nothing archived")
  T.eq(fs.stat(d .. "/home").mode, 448, "mode kept as it was (fs.mkdir made it 0700)")
  H.cleanup(d)
end)

T.test("a finished kmsrun output is reused afresh: one run in its ledger, no nested archive", function()
  local d = H.workdir("reuse")
  local rb = H.runbook(d, "ok", [[
runbook { description = "registers an undo" }
case("one", function() save("note", "x") end)
]])
  T.eq((H.run(d, { "--out", d .. "/out", rb })), 0)
  fs.write(d .. "/out/stale-file", "from before")
  fs.remove(d .. "/out/stale-file")
  local code, log = H.run(d, { "--out", d .. "/out", rb })
  T.eq(code, 0, log)
  local report = fs.read(d .. "/out/report.json")
  T.ok(report, "report written")
  local archive = require "kmsrun.archive"
  for _, e in ipairs(archive.list(d .. "/out/evidence.tar.gz") or {}) do
    T.ok(not e.name:match("evidence%.tar%.gz$"), "no archive inside the archive: " .. e.name)
  end
  H.cleanup(d)
end)

T.test("--out that is a symbolic link is refused", function()
  local d = H.workdir("outlink")
  fs.mkdir(d .. "/elsewhere")
  os.execute("ln -s '" .. d .. "/elsewhere' '" .. d .. "/out'")
  local code, log = H.run(d, { "--out", d .. "/out", H.runbook(d, "ok", PASSING) })
  T.eq(code, 2, log)
  T.contains(log, "symbolic link")
  T.eq(H.tree(d .. "/elsewhere"), {}, "nothing written through the link")
  H.cleanup(d)
end)

T.test("links planted inside the output directory are never followed (save, MANIFEST, archive)", function()
  local d = H.workdir("planted")
  local v = victim(d)
  fs.mkdir(d .. "/secretdir")
  assert(fs.write(d .. "/secretdir/shadow", "root:SECRETHASH", { mode = 384 }))
  local rb = H.runbook(d, "plant", string.format([[
runbook { description = "plants links in its own output directory", host_access = true }
case("plant", function()
  local out = %q
  os.execute("mkdir -p " .. out .. "/saved && ln -s %s " .. out .. "/saved/x.json")
  os.execute("ln -s %s " .. out .. "/shadow-link")
  os.execute("ln -s %s " .. out .. "/dirlink")
  save("x", "overwritten?")
end)
]], d .. "/out", v, d .. "/secretdir/shadow", d .. "/secretdir"))
  local code, log = H.run(d, { "--out", d .. "/out", rb })
  T.eq(code, 0, log)
  T.eq(fs.read(v), "untouched", "the save replaced the link, not its target")
  T.eq(fs.stat(d .. "/out/saved/x.json", { nofollow = true }).kind, "file")
  local manifest = fs.read(d .. "/out/MANIFEST.sha256") or ""
  T.ok(not manifest:find("shadow"), "MANIFEST does not hash the link's target")
  T.ok(not manifest:find("dirlink"), "MANIFEST does not walk into a linked directory")
  local archive = require "kmsrun.archive"
  for _, e in ipairs(archive.list(d .. "/out/evidence.tar.gz") or {}) do
    T.ok(not e.name:find("shadow") and not e.name:find("dirlink"), "not archived: " .. e.name)
    T.ok(not (archive.read(d .. "/out/evidence.tar.gz", e.name) or ""):find("SECRETHASH"), "no outside content in " .. e.name)
  end
  H.cleanup(d)
end)

T.test("a second run on the same --out is refused while the first is alive", function()
  local d = H.workdir("lock")
  local rb = H.runbook(d, "slow", [[
runbook { description = "slow" }
case("slow", function() log("started") sleep(30) end)
]])
  local p, plog = H.start(d, { "--out", d .. "/out", rb })
  T.ok(H.wait_for(plog, "started"), "the first run started")
  local code, log = H.run(d, { "--out", d .. "/out", rb })
  T.eq(code, 2, log)
  T.contains(log, "in use by another kmsrun run")
  p:signal("INT")
  T.eq((p:wait(30)), 130, "the first run ends on SIGINT")
  T.ok(fs.read(d .. "/out/report.json"), "the first run's report is intact")
  H.cleanup(d)
end)

T.test("save and rpc{save} names cannot leave the output directory", function()
  local d = H.workdir("save")
  for i, body in ipairs {
    [[save("../../escaped", "x")]],
    [[save("/tmp/escaped-abs", "x")]],
    [[rpc(k, "Onboard.GetAttestationInfo", {}, { save = "../../escaped" })]],
  } do
    local rb = H.runbook(d, "save" .. i, "runbook { description = 'escape' }\nlocal k = kms('k', { auth = auth_server('a') })\n"
      .. "case('escape', function() " .. body .. " end)\n")
    local code, log = H.run(d, { "--out", d .. "/out" .. i, rb })
    T.eq(code, 2, log)
    T.match(log, "relative to the output directory") -- '..' and absolute names alike
    T.ok(not fs.exists(d .. "/escaped.json") and not fs.exists(d .. "/escaped"), "nothing written outside")
  end
  T.ok(not fs.exists("/tmp/escaped-abs.json"))
  H.cleanup(d)
end)

T.test("--events refuses to follow a symbolic link", function()
  local d = H.workdir("events")
  local v = victim(d)
  fs.chmod(v, 420)
  os.execute("ln -s '" .. v .. "' '" .. d .. "/events.ndjson'")
  local code, log = H.run(d, { "--out", d .. "/out", "--events", d .. "/events.ndjson", H.runbook(d, "ok", PASSING) })
  T.eq(code, 2, log)
  T.contains(log, "symbolic link")
  T.eq(fs.read(v), "untouched")
  T.eq(fs.stat(v).mode, 420, "not chmodded")
  H.cleanup(d)
end)
