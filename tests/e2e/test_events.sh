#!/bin/bash
# The NDJSON event stream (`--events FILE|-`, docs/events.md): every line of a
# passing run, failing runs and an interrupted run validates against
# docs/schemas/events.schema.json with a real JSON Schema validator
# (python3-jsonschema); the order of events is the documented one; failures
# carry expected/actual and a stable failure code; no private key reaches the
# stream.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
SCHEMA=$SRC/docs/schemas/events.schema.json
RUNBOOK=$SRC/runbooks/self_auth.lua


# validate FILE...: every line of every FILE is valid against the schema.
validate() {
  $PY - "$SCHEMA" "$@" <<'PYEOF'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
lines = bad = 0
for f in sys.argv[2:]:
    for i, line in enumerate(open(f), 1):
        lines += 1
        try:
            ev = json.loads(line)
        except ValueError as e:
            bad += 1; print(f"{f}:{i}: not JSON: {e}"); continue
        for e in v.iter_errors(ev):
            bad += 1; print(f"{f}:{i}: {ev.get('event')}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
print(f"{lines} lines, {bad} errors")
sys.exit(1 if bad or not lines else 0)
PYEOF
}

# The validator is real: it rejects what the schema forbids (negative controls).
cat >"$WORK/bad.ndjson" <<'EOF'
{"seq":1,"time":1.5,"event":"run_start","runbook":"r.lua","target":"sim","output":"o"}
{"seq":2,"time":1.5,"event":"step_end","case":"c","step":"s","status":"failed","duration":0,"code":"EXPECTATION"}
{"seq":3,"time":1.5,"event":"case_end","case":"c","id":1,"status":"failed","duration":0,"error":"x","code":"OOPS"}
{"seq":4,"time":1.5,"event":"run_end","status":"passed","exit_code":1,"passed":1,"failed":0,"skipped":0}
{"seq":5,"time":1.5,"event":"rpc","kms":"k","method":"KMS.GetMeta","status":200,"surprise":true}
{"seq":6,"time":1.5,"event":"teleport"}
EOF
validate "$WORK/bad.ndjson" >"$WORK/bad.out"
if [ "$(grep -c ': ' "$WORK/bad.out")" -ge 6 ] && grep -q "'schema' is a required property" "$WORK/bad.out" \
   && grep -q "'expected' is a required property" "$WORK/bad.out" && grep -q "'OOPS' is not one of" "$WORK/bad.out" \
   && grep -q "surprise" "$WORK/bad.out" && grep -q "'teleport' is not one of" "$WORK/bad.out"; then
  ok "the schema validator rejects six kinds of bad events (negative control)"
else not_ok "the schema validator rejects bad events" "$(cat "$WORK/bad.out")"; fi

# 1. A passing run, events to a file.
run "self_auth with --events FILE passes" 0 "$KMSRUN" --out "$WORK/ok" --events "$WORK/ok.ndjson" \
  --var sim_leak_keys_to="$WORK/leaked-keys" "$RUNBOOK"
if validate "$WORK/ok.ndjson" >"$WORK/v.out"; then ok "every event of the passing run is valid ($(tail -1 "$WORK/v.out"))"
else not_ok "events of the passing run are valid" "$(head -20 "$WORK/v.out")"; fi

if $PY - "$WORK/ok.ndjson" "$WORK/ok" <<'PYEOF'
import json, os, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
kinds = [e["event"] for e in evs]
assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), "seq is 1..N without gaps"
assert all(a["time"] <= b["time"] for a, b in zip(evs, evs[1:])), "time never goes back"
assert kinds[0] == "run_start" and kinds[-1] == "run_end", (kinds[0], kinds[-1])
assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1
assert evs[0]["schema"] == "kmsrun-events/1" and evs[0]["target"] == "sim" and evs[0]["output"] == out
ends = [e for e in evs if e["event"] == "case_end"]
assert [(e["id"], e["status"]) for e in ends] == [(i, "passed") for i in range(1, 7)], ends
starts = [e["id"] for e in evs if e["event"] == "case_start"]
assert starts == [1, 2, 3, 4, 5, 6], starts
# case_start ... case_end bracket their steps; step_start/step_end alternate.
open_case, open_step = None, None
for e in evs:
    k = e["event"]
    if k == "case_start": assert open_case is None; open_case = e["case"]
    elif k == "case_end": assert open_case == e["case"] and open_step is None; open_case = None
    elif k == "step_start": assert open_step is None; open_step = (e["case"], e["step"])
    elif k == "step_end": assert open_step == (e["case"], e["step"]), (open_step, e); open_step = None
    elif k in ("rpc", "policy", "retry", "ready", "deploy"): assert open_step is not None, f"{k} outside a step"
assert all("code" not in e for e in evs if e["event"] in ("step_end", "case_end")), "no failure code on a passing run"
# The stream agrees with the output directory.
transcript = open(os.path.join(out, "transcript.ndjson")).read().splitlines()
assert kinds.count("rpc") == len(transcript), (kinds.count("rpc"), len(transcript))
pol = [e for e in evs if e["event"] == "policy"]
assert sorted(e["file"] for e in pol) == sorted("policies/" + f for f in os.listdir(os.path.join(out, "policies")) if f.endswith(".json"))
import hashlib
for e in pol:
    assert hashlib.sha256(open(os.path.join(out, e["file"]), "rb").read()).hexdigest() == e["sha256"], e["file"]
report = json.load(open(os.path.join(out, "report.json")))
assert kinds.count("cleanup") == len(report["cleanup"])
assert kinds.count("deploy") == 4 and kinds.count("ready") >= 4
last = evs[-1]
assert (last["status"], last["exit_code"], last["passed"], last["failed"], last["skipped"]) == ("passed", 0, 6, 0, 0), last
steps = sum(len(c["steps"]) for c in report["cases"]) + len(report["setup"]["steps"])
assert kinds.count("step_end") == steps, (kinds.count("step_end"), steps)
PYEOF
then ok "sequence: run_start, setup steps, 6 x (case_start ... case_end passed), cleanups, run_end; consistent with the output directory"
else not_ok "event sequence"; fi

# No private key in the stream: none of the keys the emulator handed out (PEM body
# lines and hex), no PEM private key block; the redaction markers are there.
if $PY - "$WORK/leaked-keys" "$WORK/ok.ndjson" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
keys = set()
for pem in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", text, re.S):
    keys.update(l for l in pem.split() if len(l) >= 40)
keys.update(re.findall(r"\b[0-9a-f]{64}\b", text))
assert len(keys) >= 5, f"the emulator logged {len(keys)} key fragments"
stream = open(sys.argv[2]).read()
hits = [k[:16] for k in keys if k in stream]
assert not hits, hits
assert "PRIVATE KEY" not in stream
PYEOF
then ok "no private key or PEM in the event stream (every key the emulator handed out checked)"
else not_ok "private key material in the event stream"; fi

# 2. --events -: stdout carries only events; what the console shows goes to stderr.
for mode in pass fail; do
  extra=""; want=0
  if [ $mode = fail ]; then extra="--var sim_mutation=skip-runtime-self-check"; want=1; fi
  "$KMSRUN" --out "$WORK/stdout-$mode" --events - $extra "$RUNBOOK" >"$WORK/stdout-$mode.ndjson" 2>"$WORK/stderr-$mode"
  code=$?
  grep -v '^{' "$WORK/stdout-$mode.ndjson" >"$WORK/stray-$mode"
  grep '^{' "$WORK/stdout-$mode.ndjson" >"$WORK/events-$mode.ndjson"
  if [ $code -eq $want ] && validate "$WORK/events-$mode.ndjson" >"$WORK/v.out" \
     && tail -1 "$WORK/events-$mode.ndjson" | grep -q '"event":"run_end"'; then
    ok "--events - ($mode): the events on stdout are valid ($(tail -1 "$WORK/v.out"))"
  else not_ok "--events - ($mode)" "exit $code" "$(head -5 "$WORK/v.out")"; fi
  if [ ! -s "$WORK/stray-$mode" ]; then ok "--events - ($mode): nothing but events on stdout"
  else not_ok "--events - ($mode): nothing but events on stdout" \
    "the console's summary/failure lines go to stdout ($(wc -l <"$WORK/stray-$mode") stray lines); fix proposed: console to stderr with --events -"; fi
done

# 3. A failing run: the mutation makes case 4 fail; its step_end carries expected/actual.
run "a mutation fails the run" 1 "$KMSRUN" --out "$WORK/mut" --events "$WORK/mut.ndjson" \
  --var sim_mutation=skip-runtime-self-check "$RUNBOOK"
if validate "$WORK/mut.ndjson" >"$WORK/v.out"; then ok "every event of the failing run is valid ($(tail -1 "$WORK/v.out"))"
else not_ok "events of the failing run are valid" "$(head -20 "$WORK/v.out")"; fi
if $PY - "$WORK/mut.ndjson" <<'PYEOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
failed = [e for e in evs if e["event"] == "step_end" and e["status"] != "passed"]
assert len(failed) == 1, failed
f = failed[0]
assert f["status"] == "failed" and f["code"] == "EXPECTATION", f
assert f["step"].startswith("expect_error KMS.GetTempCaCert"), f["step"]
assert f["expected"] == 'an RPC error starting with "KMS self authorization failed: KMS is not allowed: aggregated MR not allowed"', f["expected"]
assert f["actual"].startswith("HTTP 200, body: "), f["actual"][:80]
ends = {e["id"]: e for e in evs if e["event"] == "case_end"}
assert [ends[i]["status"] for i in (1, 2, 3)] == ["passed"] * 3
assert ends[4]["status"] == "failed" and ends[4]["code"] == "EXPECTATION" and "expect_error KMS.GetTempCaCert" in ends[4]["error"]
assert 5 not in ends or ends[5]["status"] == "skipped", ends.get(5)
last = evs[-1]
assert last["event"] == "run_end" and (last["status"], last["exit_code"], last["passed"], last["failed"], last["skipped"]) == ("failed", 1, 3, 1, 2), last
PYEOF
then ok "failing step_end: status failed, code EXPECTATION, expected and actual (HTTP 200) of the GetTempCaCert check; run_end failed/1"
else not_ok "failing run events"; fi

# 4. Failure codes of the other kinds of failure.
# code_of FILE EVENT STATUS: the code of the first EVENT with STATUS.
code_of() {
  $PY - "$@" <<'PYEOF'
import json, sys
f, kind, status = sys.argv[1:4]
for l in open(f):
    e = json.loads(l)
    if e["event"] == kind and e.get("status") == status:
        print(e.get("code")); break
PYEOF
}
# failure_codes FILE: the codes of the non-passed step_end events.
failure_codes() {
  $PY - "$1" <<'PYEOF'
import json, sys
print(" ".join(e["code"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "step_end" and e["status"] != "passed"))
PYEOF
}
# TRANSPORT: the emulator crashes on GetKmsKey, the RPC gets no HTTP answer.
run "no HTTP answer fails the run" 1 "$KMSRUN" -q --out "$WORK/crash" --events "$WORK/crash.ndjson" --case 4 \
  --var sim_faults=crash=GetKmsKey "$RUNBOOK"
c1=$(code_of "$WORK/crash.ndjson" step_end failed); c2=$(code_of "$WORK/crash.ndjson" case_end failed)
if [ "$c1/$c2" = "TRANSPORT/TRANSPORT" ] && validate "$WORK/crash.ndjson" >/dev/null; then ok "a lost connection is TRANSPORT (step_end and case_end)"
else not_ok "TRANSPORT code" "step_end: $c1, case_end: $c2"; fi
# TIMEOUT: a step outlives its case's deadline.
cat >"$WORK/deadline.lua" <<'EOF'
runbook { description = "a step that outlives its case's deadline" }
case("too slow", { timeout = 0.3 }, function()
  step("wait longer than the case may", function() sleep(5) end)
end)
EOF
run "a case deadline fails the run with exit 4" 4 "$KMSRUN" -q --out "$WORK/deadline" --events "$WORK/deadline.ndjson" "$WORK/deadline.lua"
c1=$(code_of "$WORK/deadline.ndjson" step_end timeout); c2=$(code_of "$WORK/deadline.ndjson" case_end timeout)
if [ "$c1/$c2" = "TIMEOUT/TIMEOUT" ] && validate "$WORK/deadline.ndjson" >/dev/null; then ok "a passed deadline is TIMEOUT (step_end and case_end)"
else not_ok "TIMEOUT code" "step_end: $c1, case_end: $c2"; fi
# An RPC cut short by the run's --timeout is TIMEOUT too (whether the watchdog or
# the RPC's own, capped, timeout fires first).
"$KMSRUN" -q --out "$WORK/slow" --events "$WORK/slow.ndjson" --timeout 1.5 --var sim_faults=slow=GetTempCaCert:5 "$RUNBOOK" \
  >"$WORK/slow.out" 2>&1
code=$?
c=$(failure_codes "$WORK/slow.ndjson")
if [ "$c" = TIMEOUT ] && validate "$WORK/slow.ndjson" >/dev/null; then ok "an RPC cut short by --timeout is TIMEOUT"
else not_ok "RPC cut short by --timeout" "codes: $c"; fi
if [ $code -eq 4 ]; then ok "the run's deadline exits 4"; else not_ok "the run's deadline exits 4" "got $code" "$(tail -5 "$WORK/slow.out")"; fi
# RUNTIME: a Lua error in a case.
run "a Lua error in a case exits 2" 2 "$KMSRUN" -q --out "$WORK/rt" --events "$WORK/rt.ndjson" "$SRC/tests/runbooks/runtime_error.lua"
c=$(code_of "$WORK/rt.ndjson" case_end error)
if [ "$c" = RUNTIME ] && validate "$WORK/rt.ndjson" >/dev/null; then ok "an uncaught Lua error is RUNTIME"; else not_ok "RUNTIME code" "got $c"; fi
# USAGE: misuse of the DSL inside a case.
cat >"$WORK/usage.lua" <<'EOF'
runbook { description = "calls rpc on an instance that was never deployed" }
local a = auth_server("auth-a")
local k = kms("kms-a", { auth = a })
case("rpc before deploy", function()
  rpc(k, "KMS.GetMeta")
end)
EOF
run "misuse of the DSL in a case exits 2" 2 "$KMSRUN" -q --out "$WORK/usage" --events "$WORK/usage.ndjson" "$WORK/usage.lua"
c=$(code_of "$WORK/usage.ndjson" case_end error)
if [ "$c" = USAGE ] && validate "$WORK/usage.ndjson" >/dev/null; then ok "misuse of the DSL is USAGE"; else not_ok "USAGE code" "got $c"; fi
# CANCELLED: SIGINT while an RPC waits.
"$KMSRUN" -q --out "$WORK/int" --events "$WORK/int.ndjson" --case 4 --var sim_faults=slow=GetTempCaCert:30 "$RUNBOOK" \
  >"$WORK/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  grep -q '"step":"rpc kms-src KMS.GetTempCaCert"' "$WORK/int.ndjson" 2>/dev/null && break
  sleep 0.05
done
kill -INT $pid
wait $pid
code=$?
c=$(code_of "$WORK/int.ndjson" case_end interrupted)
last=$(tail -1 "$WORK/int.ndjson")
if [ $code -eq 130 ] && [ "$c" = CANCELLED ] && validate "$WORK/int.ndjson" >/dev/null && echo "$last" | grep -q '"exit_code":130'; then
  ok "SIGINT: case_end interrupted with CANCELLED, run_end exit 130, every line valid"
else not_ok "interrupted run" "exit $code, code $c" "$last"; fi

# 5. report.json of every run above validates against docs/schemas/report.schema.json.
if $PY - "$SRC/docs/schemas/report.schema.json" "$WORK"/*/report.json <<'PYEOF'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for f in sys.argv[2:]:
    r = json.load(open(f))
    for e in v.iter_errors(r):
        bad += 1; print(f"{f}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
    s = r["summary"]
    assert s["passed"] + s["failed"] + s["skipped"] == len(r["cases"]), f
    assert s["passed"] == sum(c["status"] == "passed" for c in r["cases"]), f
    assert s["skipped"] == sum(c["status"] == "skipped" for c in r["cases"]), f
sys.exit(1 if bad or len(sys.argv) < 10 else 0)
PYEOF
then ok "every report.json (passed, failed, transport, deadline, Lua error, usage, interrupted) validates against the schema"
else not_ok "report.json schema validation"; fi
# 6. junit.xml of the case that timed out: not a passing test case.
if $PY - "$WORK/deadline/junit.xml" >/dev/null 2>&1 <<'PYEOF'
import sys
from junitparser import JUnitXml
cases = [c for s in JUnitXml.fromfile(sys.argv[1]) for c in s]
assert len(cases) == 1 and not cases[0].is_passed, [c.result for c in cases]
PYEOF
then ok "junit.xml: a timed-out case is not a pass"
else not_ok "junit.xml: a timed-out case is not a pass" "report.junit has no branch for status timeout; fix proposed"; fi

finish
