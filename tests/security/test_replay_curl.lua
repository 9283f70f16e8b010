-- `kmsrun replay --curl` (issue 12, point 6): every recorded text in the script is
-- quoted or escaped. The repro as the test: names and fields that would create a
-- file if they reached the shell, from a real run (case and step names with
-- newlines, quotes, $(...)) and from a tampered transcript (step, case, seq, url,
-- request); the script is run with a stub curl, and no file appears.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local proc = require "kmsrun.proc"
local server = require "kmsrun.lib.http_server"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local kit = dofile(here .. "/kit.lua")

-- Runs the script under sh in dir with a curl that only records its arguments.
local function run_script(dir, script)
  fs.mkdir(dir .. "/bin", { mode = 448 })
  assert(fs.write(dir .. "/bin/curl", "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> \"$CURL_ARGS\"\n",
    { mode = 448 }))
  assert(fs.write(dir .. "/script.sh", script, { mode = 384 }))
  local p <close> = assert(proc.spawn({ "sh", dir .. "/script.sh" }, { cwd = dir, stdout = dir .. "/sh.out",
    stderr = dir .. "/sh.out", env = { PATH = dir .. "/bin:/usr/bin:/bin", CURL_ARGS = dir .. "/curl.args" } }))
  return p:wait(60)
end

local function pwned(dir)
  for _, n in ipairs(fs.list(dir) or {}) do if n:match("^PWNED") then return n end end
  return nil
end

T.test("hostile names and a tampered transcript: the curl script runs no injected command", function()
  local dir = kit.tmpdir()
  local srv <close> = assert(server.listen(function()
    return 200, json.encode({ device_id = "d\n$(touch PWNED_resp)" }), { ["Content-Type"] = "application/json" }
  end, { port = 0 }))
  local r = kit.kmsrun(dir, { kit.here .. "/hostile_names.lua", "--out", dir .. "/out", "--var", "kms_url=" .. srv:url() })
  T.eq(r.code, 0, r.stderr .. r.stdout)
  T.ok(not r.stdout:find("\27", 1, true), "no raw ESC on the terminal")
  T.contains(r.stdout, "\\u001b[2K", "the ESC shown escaped")
  -- A tampered copy: the recorded fields rewritten by hand.
  local lines = {}
  for line in fs.read(dir .. "/out/transcript.ndjson"):gmatch("[^\n]+") do lines[#lines + 1] = line end
  local e = json.decode(lines[1])
  local t = {}
  for k, v in pairs(e) do t[k] = v end
  t.seq, t.step, t.case = 2, "s\ntouch PWNED_tstep", "c\ntouch PWNED_tcase"
  t.request = "'; touch PWNED_treq; echo '"
  lines[2] = json.encode(t)
  local u = {}
  for k, v in pairs(e) do u[k] = v end
  u.seq, u.url = 3, e.url .. "'\ntouch PWNED_turl\n'"
  lines[3] = json.encode(u)
  local v = {}
  for k, x in pairs(e) do v[k] = x end
  v.seq, v.url = 4, e.url .. "/'$(touch PWNED_turl2)'"
  lines[4] = json.encode(v)
  v.seq = "5\ntouch PWNED_tseq"
  lines[5] = json.encode(v)
  assert(fs.write(dir .. "/out/transcript.ndjson", table.concat(lines, "\n") .. "\n"))
  local rr = kit.kmsrun(dir, { "replay", dir .. "/out", "--curl" })
  T.eq(rr.code, 0, rr.stderr)
  local script = rr.stdout
  T.ok(not script:find("[%z\1-\9\11-\31\127]"), "no control character but newlines in the script")
  T.contains(script, "not written as a command: the recorded URL holds control characters")
  T.eq(run_script(dir, script), 0, fs.read(dir .. "/sh.out"))
  T.eq(pwned(dir), nil, "no injected command ran")
  -- The stub curl got the hostile texts as plain arguments.
  local args = fs.read(dir .. "/curl.args") or ""
  T.contains(args, "'; touch PWNED_treq; echo '", "the tampered body reached curl as one word")
  T.contains(args, "/'$(touch PWNED_turl2)'", "the tampered URL reached curl as one word")
  fs.remove(dir)
end)

T.test("random hostile transcript fields: sh runs exactly the curl commands and nothing else", function()
  local curl = require "kmsrun.cli.replay.curl"
  local dir = kit.tmpdir()
  local alphabet = { "'", '"', "$", "`", ";", "\n", "\r", " ", "|", "&", "(", ")", "#", "\\", "a", "Z", "/", ":",
    "$(", "'\\''", "\t", "\0", "\27", "%", "!", "*", "~", "{", "}", "<", ">" }
  math.randomseed(12)
  local function hostile()
    local t = {}
    for i = 1, math.random(0, 24) do t[i] = alphabet[math.random(#alphabet)] end
    return table.concat(t)
  end
  local entries = {}
  for i = 1, 300 do
    entries[i] = { seq = math.random() < 0.9 and i or hostile(), case = hostile(), step = hostile(),
      method = math.random() < 0.2 and "GET /finish" or "Onboard.Bootstrap",
      url = "http://127.0.0.1:1/" .. hostile(), request = math.random() < 0.5 and hostile() or { v = hostile() },
      status = 200, response = { r = hostile() } }
  end
  local script = curl.script({ path = "/out\n" .. hostile() }, entries, {})
  local commands = 0
  for line in script:gmatch("[^\n]*") do
    if line:match("^curl ") then commands = commands + 1
    else T.ok(line == "" or line:match("^#"), "every other line is a comment: " .. line) end
  end
  T.ok(commands > 20, commands .. " commands written (entries with control characters in a URL or body are comments)")
  T.eq(run_script(dir, script), 0, fs.read(dir .. "/sh.out"))
  T.eq(fs.read(dir .. "/sh.out") or "", "", "sh ran nothing but curl (no 'not found', no syntax error)")
  local _, calls = (fs.read(dir .. "/curl.args") or ""):gsub("%-sS\n", "")
  T.eq(calls, commands, "one curl call per command line")
  T.eq(pwned(dir), nil)
  fs.remove(dir)
end)
