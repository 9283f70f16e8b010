local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local archive = require "kmsrun.archive"

local dir = fs.tmpdir("kmsrun-test-fs")

T.test("write is atomic, owner-only by default, and replaces content", function()
  local path = dir .. "/a.json"
  T.ok(fs.write(path, "first"))
  T.ok(fs.write(path, "second"))
  T.eq(fs.read(path), "second")
  T.eq(fs.stat(path).mode, 384)
  T.eq(fs.list(dir), { "a.json" }, "no temp file left behind")
  T.ok(fs.write(dir .. "/b", "x", { mode = 420 }))
  T.eq(fs.stat(dir .. "/b").mode, 420)
end)

T.test("append accumulates", function()
  local path = dir .. "/log"
  fs.append(path, "a\n")
  fs.append(path, "b\n", { sync = true })
  T.eq(fs.read(path), "a\nb\n")
end)

T.test("mkdir -p, exists, list, remove", function()
  T.ok(fs.mkdir(dir .. "/x/y/z"))
  T.ok(fs.mkdir(dir .. "/x/y/z"), "existing directory is fine")
  T.eq({ fs.exists(dir .. "/x/y") }, { true, "directory" })
  T.eq(fs.stat(dir .. "/x").mode, 448)
  T.ok(fs.remove(dir .. "/x"))
  T.eq(fs.exists(dir .. "/x"), false)
  T.ok(fs.remove(dir .. "/never-existed"))
end)

T.test("world failures return nil, message, code", function()
  local data, err, code = fs.read(dir .. "/missing")
  T.eq({ data, code }, { nil, "ENOENT" })
  T.contains(err, "fs.read: cannot open")
  local ok, err2, code2 = fs.write("/proc/kmsrun-cannot-write/x", "y")
  T.eq(ok, nil)
  T.ok(code2 == "ENOENT" or code2 == "EACCES", code2)
  T.contains(err2, "fs.write:")
end)

T.test("targz archives a tree, lists and reads entries back", function()
  local root = dir .. "/bundle"
  fs.mkdir(root .. "/logs")
  fs.write(root .. "/report.json", '{"status":"passed"}')
  fs.write(root .. "/logs/kms.log", "line\n")
  local out = root .. "/evidence.tar.gz"
  T.ok(archive.targz(root, out, { prefix = "run-1" }))
  T.eq(fs.stat(out).mode, 384)
  local names = {}
  for _, e in ipairs(archive.list(out)) do names[#names + 1] = e.name end
  T.eq(names, { "run-1/logs/kms.log", "run-1/report.json" }, "sorted, archive itself excluded")
  T.eq(archive.read(out, "run-1/report.json"), '{"status":"passed"}')
  local none, _, code = archive.read(out, "run-1/nope")
  T.eq({ none, code }, { nil, "ENOENT" })
end)

T.test("beneath: relative to a root, never through a symbolic link, never out with '..'", function()
  local root = dir .. "/root"
  T.ok(fs.mkdir(root))
  T.ok(fs.write("a/b/c.txt", "x", { beneath = root }), "missing directories are created")
  T.eq(fs.stat(root .. "/a/b").mode, 448)
  T.eq(fs.read("a/b/c.txt", { beneath = root }), "x")
  T.ok(fs.append("a/log", "1", { beneath = root }))
  T.ok(fs.mkdir("a/d", { beneath = root }))
  T.ok(fs.write(dir .. "/outside", "keep"))
  os.execute("ln -s '" .. dir .. "/outside' '" .. root .. "/link'; ln -s '" .. dir .. "' '" .. root .. "/dirlink'")
  local ok, err, code = fs.append("link", "x", { beneath = root })
  T.eq({ ok, code }, { nil, "ELOOP" }, err)
  T.eq({ select(3, fs.read("link", { beneath = root })) }, { "ELOOP" })
  T.eq({ select(3, fs.write("dirlink/outside", "x", { beneath = root })) }, { "ELOOP" })
  T.eq({ select(3, fs.mkdir("dirlink/new", { beneath = root })) }, { "ELOOP" })
  T.eq({ select(3, fs.write("../outside", "x", { beneath = root })) }, { "EINVAL" })
  T.eq({ select(3, fs.write("/etc/passwd", "x", { beneath = root })) }, { "EINVAL" })
  T.ok(fs.write("link", "replaced", { beneath = root }), "write replaces the link itself")
  T.eq(fs.read(dir .. "/outside"), "keep", "the link's target is untouched")
  T.eq(fs.stat(root .. "/link", { nofollow = true }).kind, "file")
  T.eq(fs.stat(root .. "/dirlink", { nofollow = true }).kind, "link")
  T.eq({ select(3, fs.append(root .. "/dirlink", "x", { nofollow = true })) }, { "ELOOP" })
end)

T.test("lock: held for the process's life; a second lock is EBUSY; a link is refused", function()
  T.ok(fs.lock(dir .. "/lockfile", "holder\n"))
  T.eq(fs.read(dir .. "/lockfile"), "holder\n")
  local ok, err, code = fs.lock(dir .. "/lockfile")
  T.eq({ ok, code }, { nil, "EBUSY" }, err)
  os.execute("ln -s '" .. dir .. "/lockfile' '" .. dir .. "/locklink'")
  T.eq({ select(3, fs.lock(dir .. "/locklink")) }, { "ELOOP" })
end)
