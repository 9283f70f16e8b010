/* libFuzzer harness: arbitrary bytes as a runbook, loaded by kmsrun.run.runbook.load
 * in a state where declarations are recorded but nothing runs (no task, no event
 * loop turn: actions cannot wait, and case bodies are only stored). The runbook
 * sees a `require` that only hands out pure modules, so generated code cannot
 * reach the file system or start processes; the shared libraries (string, table,
 * math, utf8, the string metatable) and the redactor's taint list are restored
 * after every input so one input cannot change the next. Runaway code is stopped
 * by the instruction budget (not a finding) and the memory cap.
 *
 * A finding is: runbook.load raising instead of returning nil, err; an error that
 * is not a string; a malformed spec; and, with FUZZ_STRICT=1, a load error raised
 * inside the stdlib (a DSL function crashing on a bad argument instead of
 * reporting a usage error at the runbook's line). Strict mode skips inputs that
 * change the shared libraries or forge handles (tables with a __kind field, which
 * the API trusts): those crash the stdlib by design, not by a bug.
 *
 *   build-fuzz/fuzz_runbook -max_total_time=120 tests/fuzz/corpus/fuzz_runbook
 */
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char DRIVER[] =
    "local path, strict = ...\n"
    "strict = strict == '1'\n"
    "local runbook = require 'kmsrun.run.runbook'\n"
    "local redact = require 'kmsrun.report.redact'\n"
    "for _, m in ipairs({ 'kmsrun.kms.policies', 'kmsrun.dsl.steps', 'kmsrun.dsl.expect', 'kmsrun.dsl.actions',\n"
    "  'kmsrun.dsl.declare', 'kmsrun.dsl.api', 'kmsrun.lib.json', 'kmsrun.lib.linediff', 'kmsrun.run.runner' }) do require(m) end\n"
    "local PURE = { ['kmsrun.lib.json'] = true, ['kmsrun.kms.policies'] = true, ['kmsrun.dsl.api'] = true, ['kmsrun.lib.linediff'] = true }\n"
    "_G.require = function(name)\n"
    "  if PURE[name] and package.loaded[name] then return package.loaded[name] end\n"
    "  error('require is disabled in the fuzz harness: ' .. tostring(name), 2)\n"
    "end\n"
    "_G.print = function() end\n"
    "local shared = { string = string, table = table, math = math, utf8 = utf8 }\n"
    "local saved, smt, smt_saved = {}, getmetatable(''), {}\n"
    "for k, v in pairs(smt) do smt_saved[k] = v end\n"
    "for name, t in pairs(shared) do saved[name] = {}; for k, v in pairs(t) do saved[name][k] = v end end\n"
    "local rawget, rawset, next, setmetatable, pairs = rawget, rawset, next, setmetatable, pairs\n"
    "local function reset(t, from)\n"
    "  setmetatable(t, nil)\n"
    "  local k = next(t)\n"
    "  while k ~= nil do local nk = next(t, k); if from[k] == nil then rawset(t, k, nil) end; k = nk end\n"
    "  for k, v in pairs(from) do rawset(t, k, v) end\n"
    "end\n"
    "local function after()\n"
    "  for name, t in pairs(shared) do reset(t, saved[name]) end\n"
    "  debug.setmetatable('', smt)\n"
    "  reset(smt, smt_saved)\n"
    "  for i = 1, 20 do -- secret() taints values: drop them\n"
    "    local name = debug.getupvalue(redact.add, i)\n"
    "    if not name then break end\n"
    "    if name == 'secrets' or name == 'known' or name == 'ordered' then debug.setupvalue(redact.add, i, {}) end\n"
    "  end\n"
    "end\n"
    "-- The driver must work after the input changed string methods: plain locals.\n"
    "local sfind, smatch, tostring, type, ipairs, error, assert = string.find, string.match, tostring, type, ipairs, error, assert\n"
    "local function spent(e)\n"
    "  e = tostring(e)\n"
    "  return sfind(e, 'instruction budget exhausted', 1, true) or sfind(e, 'not enough memory', 1, true)\n"
    "    or sfind(e, 'stack overflow', 1, true)\n"
    "end\n"
    "-- Whether the input changed the libraries the stdlib relies on (then a stdlib\n"
    "-- error is the input's doing, not a finding).\n"
    "local function tampered()\n"
    "  if getmetatable('') ~= smt then return true end\n"
    "  for k, v in pairs(smt_saved) do if rawget(smt, k) ~= v then return true end end\n"
    "  for name, t in pairs(shared) do\n"
    "    if getmetatable(t) ~= nil then return true end\n"
    "    for k, v in pairs(saved[name]) do if rawget(t, k) ~= v then return true end end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "local INTERNAL = { 'kmsrun/dsl/', 'kmsrun/run/runbook.lua', 'kmsrun/dsl/api.lua', 'kmsrun/kms/policies.lua' }\n"
    "local function run(data)\n"
    "  local f = assert(io.open(path, 'wb')); f:write(data); f:close()\n"
    "  local ok, spec, err = pcall(runbook.load, path)\n"
    "  if not ok then\n"
    "    if spent(spec) then return end\n"
    "    error('runbook.load raised: ' .. tostring(spec), 0)\n"
    "  end\n"
    "  if not spec then\n"
    "    if err == nil then return end -- error(nil) in the runbook\n"
    "    if type(err) ~= 'string' then error('runbook.load returned a ' .. type(err) .. ' error', 0) end\n"
    "    -- Handles are plain tables the API recognises by their __kind field; an input\n"
    "    -- forging one (expect_ok({__kind = 'response'})) is out of strict mode's scope.\n"
    "    if strict and not spent(err) and not tampered() and not sfind(data, '__kind', 1, true) then\n"
    "      -- Where the error was raised: the chunk name before ':<line>:' of its first line.\n"
    "      local where = smatch(err, '^([^:\\n]+):%d+:') or ''\n"
    "      for _, p in ipairs(INTERNAL) do\n"
    "        if sfind(where, p, 1, true) then error('the stdlib crashed on a runbook mistake: ' .. err, 0) end\n"
    "      end\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  assert(type(spec) == 'table' and type(spec.cases) == 'table' and type(spec.header) == 'table', 'malformed spec')\n"
    "  for i, c in ipairs(spec.cases) do\n"
    "    assert(c.id == i and type(c.name) == 'string' and type(c.fn) == 'function', 'malformed case')\n"
    "  end\n"
    "  local rok, rerr = pcall(spec.resolve_vars, {}, {})\n"
    "  if not rok and strict and not spent(rerr) and not tampered() then error('resolve_vars raised: ' .. tostring(rerr), 0) end\n"
    "end\n"
    "return run, after\n";

static lua_State *L;
static fz_driver driver;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    static char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/kmsrun-fuzz-runbook-%d.lua", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    const char *s = getenv("FUZZ_STRICT");
    const char *args[2] = {path, (s && *s && strcmp(s, "0") != 0) ? "1" : "0"};
    L = fz_open((size_t)512 << 20);
    driver = fz_load_driver(L, "=fuzz_runbook", DRIVER, 2, args);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (64u << 10)) return 0;
    const char *err = NULL;
    if (fz_call(L, &driver, data, size, 20000, &err) == FZ_ERROR) {
        fprintf(stderr, "fuzz_runbook: %s\n", err);
        abort();
    }
    return 0;
}
