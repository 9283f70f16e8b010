/* libFuzzer harness: arbitrary bytes as a run's ledger.ndjson, read by `kmsrun
 * cleanup` (cli/cleanup/ledger.lua) and every entry examined by the undo
 * functions in dry-run mode, after the checks of cli/cleanup/trust.lua. The
 * ledger is hostile input: parsing and checking it must never raise, and in
 * dry-run nothing may be signalled, removed or written. The harness makes the
 * effects fail loudly: proc.spawn, fs.remove and fs.write raise if reached, and
 * the VMM client is never given a URL (no --vmm-url).
 *
 *   build-fuzz/fuzz_ledger -max_total_time=120 tests/fuzz/corpus/fuzz_ledger
 */
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char DRIVER[] =
    "local dir = ...\n"
    "local fs = require 'kmsrun.fs'\n"
    "local proc = require 'kmsrun.proc'\n"
    "local ledger = require 'kmsrun.cli.cleanup.ledger'\n"
    "local undo = require 'kmsrun.cli.cleanup.undo'\n"
    "local trust = require 'kmsrun.cli.cleanup.trust'\n"
    "local write, remove, spawn = fs.write, fs.remove, proc.spawn\n"
    "local function forbid(what) return function() error('dry run reached ' .. what, 0) end end\n"
    "-- The runbook a ledger names is never loaded here (it would run its declarations).\n"
    "trust.policy_files = function() return nil, 'not loaded by the fuzz harness' end\n"
    "local function run(data)\n"
    "  assert(write(dir .. '/ledger.ndjson', data))\n"
    "  fs.write, fs.remove, proc.spawn = forbid('fs.write'), forbid('fs.remove'), forbid('proc.spawn')\n"
    "  local ok, err = pcall(function()\n"
    "    local regs, bad = ledger.read(dir)\n"
    "    assert(regs, 'read_ledger failed on a readable ledger: ' .. tostring(bad))\n"
    "    assert(type(bad) == 'table', 'read_ledger: no list of bad lines')\n"
    "    local opts = { dry_run = true, grace = 0, run = regs.run, out_abs = dir }\n"
    "    for i = #regs, 1, -1 do\n"
    "      local r = regs[i]\n"
    "      local fn = type(r.undo) == 'table' and undo[r.undo.kind]\n"
    "      if fn then\n"
    "        local good, msg = fn(r.undo, r, opts)\n"
    "        assert(type(msg) == 'string', 'an undo gave no message')\n"
    "        assert(good == true or good == nil, 'an undo returned ' .. tostring(good))\n"
    "      end\n"
    "    end\n"
    "  end)\n"
    "  fs.write, fs.remove, proc.spawn = write, remove, spawn\n"
    "  if not ok then error(tostring(err), 0) end\n"
    "end\n"
    "return run\n";

static lua_State *L;
static fz_driver driver;
static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kmsrun-fuzz-ledger-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    mkdir(dir, 0700);
    unsetenv("DSTACK_VMM_URL");
    const char *args[1] = {dir};
    L = fz_open((size_t)512 << 20);
    driver = fz_load_driver(L, "=fuzz_ledger", DRIVER, 1, args);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (256u << 10)) return 0;
    const char *err = NULL;
    if (fz_call(L, &driver, data, size, 20000, &err) == FZ_ERROR) {
        fprintf(stderr, "fuzz_ledger: %s\n", err);
        abort();
    }
    return 0;
}
