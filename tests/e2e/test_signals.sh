#!/bin/bash
# Ctrl-C and SIGTERM: every child started is stopped (checked by pid), and a
# runbook run still writes its report and evidence archive, exiting 130.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

wait_for() { # FILE PATTERN: up to 20 s
  for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

# 1. A plain script's child is killed when kmsrun gets SIGINT.
cat >"$WORK/child.lua" <<'LUA'
local proc = require "kmsrun.proc"
local p = assert(proc.spawn({ "sleep", "300" }))
print("child " .. p.pid)
io.stdout:flush()
require("kmsrun.time").sleep(300)
LUA
"$KMSRUN" script "$WORK/child.lua" >"$WORK/child.out" 2>&1 &
kpid=$!
if wait_for "$WORK/child.out" "^child "; then
  cpid=$(sed -n 's/^child //p' "$WORK/child.out")
  kill -INT "$kpid"
  wait "$kpid"; code=$?
  sleep 0.1
  if [ "$code" -eq 130 ]; then ok "kmsrun exits 130 on SIGINT"; else not_ok "kmsrun exits 130 on SIGINT" "got $code"; fi
  if kill -0 "$cpid" 2>/dev/null; then not_ok "child $cpid killed" "still alive"; kill -9 "$cpid"; else ok "child $cpid is gone (no orphan)"; fi
else
  not_ok "script started its child" "$(cat "$WORK/child.out")"; kill -9 "$kpid"
fi

# 2. A runbook interrupted in the middle of case 3: cleanup, report, archive, 130.
for sig in INT TERM; do
  out="$WORK/run-$sig"
  "$KMSRUN" --out "$out" --var sim_faults=slow=Onboard.Onboard:30 "$SRC/runbooks/self_auth.lua" >"$WORK/run-$sig.log" 2>&1 &
  kpid=$!
  # The console names a step when it ends, so the case's start is the sign: its
  # two policy flips take milliseconds, then the slowed Onboard is in flight for 30 s.
  if wait_for "$WORK/run-$sig.log" "case 3/6"; then
    sleep 1
    pids=$(grep -o 'process [0-9]*' "$out/ledger.ndjson" | awk '{print $2}' | sort -u | tr '\n' ' ')
    kill -"$sig" "$kpid"
    wait "$kpid"; code=$?
    if [ "$code" -eq 130 ]; then ok "SIG$sig during case 3: exit 130"; else not_ok "SIG$sig during case 3: exit 130" "got $code" "$(tail -20 "$WORK/run-$sig.log")"; fi
    left=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    if [ -n "$pids" ] && [ -z "$left" ]; then ok "SIG$sig: every emulator process stopped ($pids)"; else not_ok "SIG$sig: processes stopped" "pids: $pids left: $left"; fi
    if grep -q '"status": "interrupted"' "$out/report.json" 2>/dev/null && [ -s "$out/evidence.tar.gz" ]; then
      ok "SIG$sig: report (interrupted) and archive written"
    else not_ok "SIG$sig: report and archive written" "$(ls "$out" 2>&1)"; fi
    if grep -q '"action":"undone"' "$out/ledger.ndjson"; then ok "SIG$sig: cleanups ran (ledger)"; else not_ok "SIG$sig: cleanups ran"; fi
  else
    not_ok "run reached case 3" "$(tail -20 "$WORK/run-$sig.log")"; kill -9 "$kpid"
  fi
done

finish
