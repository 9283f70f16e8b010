-- `kmsrun cleanup OUTDIR`: undoes what a run left behind when it could not clean
-- up itself (SIGKILL, a crash, a power cut), from the cleanup ledger
-- OUTDIR/ledger.ndjson that the run appends (and fsyncs) as it goes.
--
-- Every registered action not yet marked "undone" is undone, last in first out,
-- once cli/cleanup/trust.lua has checked it is what this user's run created:
--   process  SIGTERM to its process group, a grace period, then SIGKILL
--            (already gone is fine; a pid now owned by another process is left alone)
--   dir      removed
--   vm       StopVm then RemoveVm (targets/vmm/vm.lua: every release, waiting through
--            "removing"), found by its recorded id or unique name, through the VMM given
--            on the command line (--vmm-url, or DSTACK_VMM_URL); credentials come from
--            DSTACK_VMM_TOKEN or DSTACK_VMM_AUTH_USER + DSTACK_VMM_AUTH_PASSWORD, never
--            from the ledger
--   file     its recorded content restored (removed when recorded as absent), with
--            the file's current permissions
-- The directory must be this user's and 0700, and the run that wrote it must be
-- gone (its lock): a live run is refused unless --force.
-- Each outcome is appended to the ledger as an "undone" or "undo_failed" line, so a
-- second cleanup only retries what failed. Registrations without an undo record
-- (in-process servers, logical "remove X" entries whose parts are recorded on their
-- own) ended with the run's process; they are listed and left alone.
-- Exit codes: 0 everything undone, 5 something could not be undone, 2 usage.
local fs = require "kmsrun.fs"
local json = require "kmsrun.lib.json"
local time = require "kmsrun.time"
local exit_codes = require "kmsrun.run.exit_codes"
local trust = require "kmsrun.cli.cleanup.trust"
local outdir = require "kmsrun.report.outdir"

local USAGE = [[
usage: kmsrun cleanup [--grace SECONDS] [--dry-run] [--vmm-url URL] [--force] OUTDIR

Undoes, last in first out, every action a run registered in OUTDIR/ledger.ndjson and
did not undo itself (the run was killed): stops its processes (SIGTERM to the process
group, SIGKILL after the grace period, default 5 s), removes its work directories,
removes its VMs from the VMM given by --vmm-url (or DSTACK_VMM_URL; credentials from
DSTACK_VMM_TOKEN, or DSTACK_VMM_AUTH_USER and DSTACK_VMM_AUTH_PASSWORD) and restores
the policy files it changed. Each entry is checked first: a process must still be
the one the run started (start time and command line), a directory the run's own
(in OUTDIR or a kmsrun-* directory in $TMPDIR), a file one the runbook names.
OUTDIR must be this user's and 0700; a run still alive is refused (--force: anyway).
Outcomes are appended to the ledger; running it again only retries what failed.

exit codes: 0 nothing left to undo, 5 something could not be undone, 2 usage error
]]

local out = io.stdout

local function say(fmt, ...)
  out:write(string.format(fmt, ...), "\n")
  out:flush()
end

local UNDO = require "kmsrun.cli.cleanup.undo"
local argv = require "kmsrun.lib.argv"


-- The ledger ------------------------------------------------------------------------------

local read_ledger = require("kmsrun.cli.cleanup.ledger").read

local FLAGS = {
  ["--help"] = { "help" }, ["-h"] = "--help",
  ["--dry-run"] = { "dry_run" }, ["-n"] = "--dry-run",
  ["--force"] = { "force" },
  ["--vmm-url"] = { "vmm_url", value = "URL", check = function(v) if v ~= "" then return v end return nil, "the VMM's URL" end },
  ["--grace"] = { "grace", value = "SECONDS", check = argv.seconds(600, true) },
}

local function parse_args(args)
  local o, err = argv.parse(args, FLAGS, { defaults = { grace = 5 }, positional = "dir",
    several = "one output directory at a time" })
  if not o then return nil, err end
  if not o.help and not o.dir then return nil, "give the output directory of the run to clean up" end
  return o
end

return function(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("kmsrun cleanup: ", perr, "\n", USAGE)
    return exit_codes.USAGE
  end
  if o.help then out:write(USAGE) return exit_codes.OK end
  local dir = o.dir:gsub("(.)/+$", "%1")
  local ledger = dir .. "/ledger.ndjson"
  local _, kind = fs.exists(dir)
  if kind ~= "directory" then
    io.stderr:write("kmsrun cleanup: ", dir, " is not a directory\n")
    return exit_codes.USAGE
  end
  if not fs.exists(ledger) then
    local marker = dir .. "/" .. outdir.LOCK
    if fs.exists(marker) and select(3, fs.lock(marker)) == "EBUSY" then
      io.stderr:write("kmsrun cleanup: the run that writes ", dir, " is still running and has registered nothing ",
        "yet; it cleans up itself when it ends\n")
      return exit_codes.USAGE
    end
    io.stderr:write("kmsrun cleanup: no cleanup ledger in ", dir, " (", ledger, " does not exist): nothing was registered there\n")
    return exit_codes.USAGE
  end
  local why = trust.check_dir(dir)
  if why then
    io.stderr:write("kmsrun cleanup: refusing ", dir, ": ", why, "\n")
    return exit_codes.USAGE
  end
  -- The run's lock: held while the run that wrote the ledger is alive. Held by
  -- cleanup from here on, so no run starts in the directory meanwhile.
  local locked, lerr, lcode = fs.lock(dir .. "/" .. outdir.LOCK)
  if not locked then
    if lcode ~= "EBUSY" then
      io.stderr:write("kmsrun cleanup: ", tostring(lerr), "\n")
      return exit_codes.USAGE
    end
    local holder = json.decode(fs.read(dir .. "/" .. outdir.LOCK) or "") or {}
    if not o.force then
      io.stderr:write("kmsrun cleanup: the run that wrote ", dir, " is still running (pid ", tostring(holder.pid),
        "): it cleans up itself when it ends; stop it first (Ctrl-C, or SIGTERM to ", tostring(holder.pid),
        "), or pass --force to undo its actions under it\n")
      return exit_codes.USAGE
    end
    say("note: --force: the run that wrote %s is still running (pid %s)", dir, tostring(holder.pid))
  end
  o.vmm_url = o.vmm_url or (os.getenv("DSTACK_VMM_URL") ~= "" and os.getenv("DSTACK_VMM_URL") or nil)
  o.out_abs = dir:sub(1, 1) == "/" and dir or (fs.cwd() .. "/" .. dir:gsub("^%./", ""))
  local regs, bad = read_ledger(dir)
  if not regs then
    io.stderr:write("kmsrun cleanup: cannot read ", ledger, ": ", tostring(bad), "\n")
    return exit_codes.USAGE
  end
  o.run = regs.run
  for _, n in ipairs(bad) do say("note: line %d of the ledger is not a ledger entry; ignored", n) end
  if bad.torn then say("note: the ledger's last line is incomplete (the run was killed while writing it); ignored") end
  if bad.torn and not o.dry_run then
    -- End the torn line, so the lines appended below stay lines of their own.
    fs.append("ledger.ndjson", "\n", { mode = 384, sync = true, beneath = dir })
  end

  local counts = { undone = 0, failed = 0, done_before = 0, no_undo = 0, planned = 0 }
  for i = #regs, 1, -1 do
    local r = regs[i]
    if r.state == "undone" then
      counts.done_before = counts.done_before + 1
    elseif type(r.undo) ~= "table" then
      counts.no_undo = counts.no_undo + 1
      say("skip    #%s %s: no undo recorded (an in-process resource: it ended with the run)", tostring(r.id), r.description)
    else
      local fn = UNDO[r.undo.kind]
      local ok, msg
      if not fn then
        ok, msg = nil, "unknown undo kind '" .. tostring(r.undo.kind) .. "'"
      else
        local pok, a, b = pcall(fn, r.undo, r, o)
        if pok then ok, msg = a, b else ok, msg = nil, "internal error: " .. tostring(a) end
      end
      if o.dry_run then
        counts.planned = counts.planned + 1
        say("%s #%s %s: %s", ok and "plan   " or "FAILED ", tostring(r.id), r.description, tostring(msg))
      else
        local entry = { action = ok and "undone" or "undo_failed", id = r.id, line = r.line, description = r.description,
          by = "kmsrun cleanup", result = ok and msg or nil, error = (not ok) and msg or nil, time = time.wall() }
        local aok, aerr = fs.append("ledger.ndjson", json.encode(entry) .. "\n", { mode = 384, sync = true, beneath = dir })
        if not aok then io.stderr:write("kmsrun cleanup: cannot append to ", ledger, ": ", tostring(aerr), "\n") end
        if ok then counts.undone = counts.undone + 1 else counts.failed = counts.failed + 1 end
        say("%s #%s %s: %s", ok and "undone " or "FAILED ", tostring(r.id), r.description, tostring(msg))
      end
    end
  end
  if o.dry_run then
    say("kmsrun cleanup: dry run, %d action(s) examined, nothing changed", counts.planned)
    return exit_codes.OK
  end
  if counts.undone == 0 and counts.failed == 0 then
    say("kmsrun cleanup: nothing to undo in %s (%d already undone, %d without an undo record)", dir,
      counts.done_before, counts.no_undo)
  else
    say("kmsrun cleanup: %d undone, %d failed, %d already undone before, %d without an undo record",
      counts.undone, counts.failed, counts.done_before, counts.no_undo)
  end
  if counts.failed > 0 then
    io.stderr:write("kmsrun cleanup: ", counts.failed, " action(s) could not be undone; something may be left behind (run it again to retry)\n")
    return exit_codes.CLEANUP
  end
  return exit_codes.OK
end

