-- lib/argv.lua: the one command-line parser of every kmsrun command.
local T = require "kmsrun.lib.testing"
local argv = require "kmsrun.lib.argv"

local FLAGS = {
  ["--out"] = { "out", value = "DIR" },
  ["--case"] = { "cases", value = "SEL", list = true },
  ["--quiet"] = { "quiet" }, ["-q"] = "--quiet",
  ["--grace"] = { "grace", value = "SECONDS", check = argv.seconds(600, true) },
}
local OPTS = { defaults = { grace = 5 }, positional = "dir", several = "one directory at a time" }

local function parse(...) return argv.parse({ ... }, FLAGS, OPTS) end

T.test("values, inline values, lists, aliases, defaults and the positional", function()
  local o = assert(parse("-q", "--out", "a", "--case=1", "--case", "two", "d"))
  T.eq(o, { quiet = true, out = "a", cases = { "1", "two" }, grace = 5, dir = "d" })
  T.eq(assert(parse()).cases, {}, "a list flag starts empty")
  T.eq(assert(parse("--grace", "0")).grace, 0)
  T.eq(assert(parse("-")).dir, "-", "a bare dash is an argument")
end)

T.test("mistakes are one message each", function()
  local function err(...) return select(2, parse(...)) end
  T.eq(err("--out"), "--out needs a value (DIR)")
  T.eq(err("--nope"), "unknown option --nope")
  T.eq(err("--quiet=yes"), "--quiet takes no value")
  T.eq(err("--grace", "601"), "--grace expects seconds (0..600), got '601'")
  T.eq(err("a", "b"), "one directory at a time (got 'a' and 'b')")
  T.eq(select(2, argv.parse({ "x" }, FLAGS)), "unexpected argument 'x'")
end)
