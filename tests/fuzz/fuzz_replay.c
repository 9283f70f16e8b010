/* libFuzzer harness: arbitrary bytes as a recorded run's transcript.ndjson, read
 * back by `kmsrun replay` (cli/replay/record.lua) and turned into the curl script
 * of `kmsrun replay --curl` (cli/replay/curl.lua). A transcript can be tampered
 * with, so: reading it never raises, and the script it gives never runs anything
 * but curl: every line is empty, a comment, or one curl command whose words are
 * all single-quoted or plain (letters, digits, - _ . / : =: no shell
 * metacharacter), with no control character anywhere.
 *
 *   build-fuzz/fuzz_replay -max_total_time=120 tests/fuzz/corpus/fuzz_replay
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
    "local record = require 'kmsrun.cli.replay.record'\n"
    "local curl = require 'kmsrun.cli.replay.curl'\n"
    "assert(fs.write(dir .. '/report.json', '{}'))\n"
    "-- A curl line: fixed options and single-quoted words only (a quoted word may hold\n"
    "-- anything but a quote; an embedded quote is written '\\\\'' ).\n"
    "local function safe_curl(line)\n"
    "  if line:sub(1, 5) ~= 'curl ' then return false end\n"
    "  local rest = line:sub(6)\n"
    "  while rest ~= '' do\n"
    "    local word, after = rest:match(\"^('[^']*')(.*)$\")\n"
    "    if not word then word, after = rest:match(\"^(\\\\')(.*)$\") end\n"
    "    if not word then word, after = rest:match('^([%w%-_%./:=]+)(.*)$') end -- no shell metacharacter\n"
    "    if not word then word, after = rest:match('^( )(.*)$') end\n"
    "    if not word then return false end\n"
    "    rest = after\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local function run(data)\n"
    "  assert(fs.write(dir .. '/transcript.ndjson', data))\n"
    "  local rec, err = record.open(dir)\n"
    "  if not rec then assert(type(err) == 'string', 'record.open: no reason') return end\n"
    "  local script = curl.script(rec, rec.transcript or {}, {})\n"
    "  assert(type(script) == 'string', 'no script')\n"
    "  local n = 0\n"
    "  for line in script:gmatch('([^\\n]*)\\n') do\n"
    "    n = n + 1\n"
    "    assert(not line:find('[%z\\1-\\31\\127]'), 'a control character in script line ' .. n)\n"
    "    assert(line == '' or line:sub(1, 1) == '#' or safe_curl(line), 'script line ' .. n .. ' could run something: ' .. line:sub(1, 200))\n"
    "  end\n"
    "end\n"
    "return run\n";

static lua_State *L;
static fz_driver driver;
static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kmsrun-fuzz-replay-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    mkdir(dir, 0700);
    const char *args[1] = {dir};
    L = fz_open((size_t)512 << 20);
    driver = fz_load_driver(L, "=fuzz_replay", DRIVER, 1, args);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (256u << 10)) return 0;
    const char *err = NULL;
    if (fz_call(L, &driver, data, size, 20000, &err) == FZ_ERROR) {
        fprintf(stderr, "fuzz_replay: %s\n", err);
        abort();
    }
    return 0;
}
