/* libFuzzer harness: arbitrary bytes as the answer of a KMS to a prpc call, through
 * what a runbook's rpc does with it: prpc.response (decode), redact.response, the
 * transcript's json.encode, and a json decode/encode round trip. None of it may
 * raise for any input, and the encoder's output must be valid UTF-8 JSON that
 * decodes back and re-encodes stably. The first input byte picks the HTTP status.
 *
 *   build-fuzz/fuzz_response -max_total_time=120 tests/fuzz/corpus/fuzz_response
 */
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static const char DRIVER[] =
    "local prpc = require 'kmsrun.kms.prpc'\n"
    "local json = require 'kmsrun.lib.json'\n"
    "local n, redact = 0, nil\n"
    "local STATUS = { 200, 400, 500, 404, 200, 200, 413, 502 }\n"
    "return function(data)\n"
    "  n = n + 1\n"
    "  -- A fresh redactor now and then, so tainted values do not pile up across inputs.\n"
    "  if n % 256 == 1 then package.loaded['kmsrun.report.redact'] = nil; redact = require 'kmsrun.report.redact' end\n"
    "  local status = STATUS[(data:byte(1) or 0) % #STATUS + 1]\n"
    "  local body = data:sub(2)\n"
    "  local res = prpc.response('Onboard.GetAttestationInfo', 'http://127.0.0.1:1/prpc/Onboard.GetAttestationInfo?json',\n"
    "    '{}', { status = status, body = body, time = 0.001 })\n"
    "  assert(type(res) == 'table' and res.raw == body and res.status == status)\n"
    "  assert(res.error == nil or type(res.error) == 'string', 'error is a string or nil')\n"
    "  if res.ok then assert(status == 200 and res.error == nil and res.body ~= nil) end\n"
    "  if json.decode(body) == nil then assert(not res.ok and res.json_error and res.body == body) end\n"
    "  local red = redact.response(res.body)\n"
    "  local entry = { kms = 'fuzz', method = res.method, status = res.status, response = red,\n"
    "    error = res.error and redact.response(res.error), request = res.request }\n"
    "  local text = redact.scrub(json.encode(entry))\n"
    "  assert(utf8.len(text), 'encoder output is not UTF-8')\n"
    "  local back = json.decode(text)\n"
    "  assert(type(back) == 'table', 'encoder output does not decode')\n"
    "  local again = json.encode(back)\n"
    "  assert(json.encode(json.decode(again)) == again, 'the JSON round trip is not stable')\n"
    "  local pretty = json.encode(red, { pretty = true })\n"
    "  assert(utf8.len(pretty), 'pretty output is not UTF-8')\n"
    "  assert(redact.find_leak(text) == nil, 'a tainted secret survived the scrub')\n"
    "  redact.response(body)\n"
    "end\n";

static lua_State *L;
static fz_driver driver;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    L = fz_open((size_t)512 << 20);
    driver = fz_load_driver(L, "=fuzz_response", DRIVER, 0, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    const char *err = NULL;
    fz_status st = fz_call(L, &driver, data, size, 200000, &err);
    if (st == FZ_ERROR) {
        fprintf(stderr, "fuzz_response: the response pipeline raised:\n%s\n", err);
        abort();
    }
    if (st == FZ_BUDGET) {
        fprintf(stderr, "fuzz_response: 200M VM instructions for one response of %zu bytes (a loop?)\n", size);
        abort();
    }
    return 0;
}
