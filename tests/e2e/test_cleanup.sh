#!/bin/bash
# `kmsrun cleanup OUTDIR`: a run SIGKILLed in the middle leaves its ledger; cleanup
# undoes every registered action from it (processes by pid, work directories, VMs
# through the VMM API, files), appends its outcomes, and a second cleanup is a no-op.
# What the killed run wrote before it died stays readable line by line.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
RUNBOOK=$SRC/runbooks/self_auth.lua
# Servers this script starts are stopped however it ends.
started_pids=""
trap 'for p in $started_pids; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

wait_for() { # FILE PATTERN: up to 20 s
  for _ in $(seq 400); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
# A pid counts as gone when it no longer exists or is a zombie (exited, waiting to
# be reaped: in some containers pid 1 never reaps orphans).
gone() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}
ledger_pids() { grep -o '"kind":"process","pid":[0-9]*' "$1" | grep -o '[0-9]*$' | sort -u | tr '\n' ' '; }
ledger_dirs() { $PY -c '
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    u = e.get("undo") or {}
    if e["action"] == "register" and u.get("kind") == "dir": print(u["path"])' "$1"; }
# Every line of an append-only file parses as JSON (what the run wrote before dying is readable).
parses() { $PY -c '
import json, sys
n = 0
for l in open(sys.argv[1]):
    json.loads(l); n += 1
assert n > 0
print(n)' "$1"; }

# 1. SIGKILL a self_auth run in the middle of case 3, then clean up after it.
out="$WORK/killed"
"$KMSRUN" -v --out "$out" --var sim_faults=slow=Onboard.Onboard:60 "$RUNBOOK" >"$WORK/killed.log" 2>&1 &
kpid=$!
if wait_for "$WORK/killed.log" "\.\.\. rpc kms-dst Onboard.Onboard"; then
  sleep 0.2
  pids=$(ledger_pids "$out/ledger.ndjson")
  dirs=$(ledger_dirs "$out/ledger.ndjson" | tr '\n' ' ')
  kill -KILL "$kpid"
  wait "$kpid" 2>/dev/null
  [ -n "$pids" ] && [ -n "$dirs" ] && ok "the ledger names the run's processes ($pids) and work directories" \
    || not_ok "the ledger names processes and directories" "pids: $pids dirs: $dirs"
  left=""
  for d in $dirs; do [ -e "$d" ] && left="$left $d"; done
  [ -n "$left" ] && ok "after SIGKILL the work directories are left behind" || not_ok "work directories left behind by SIGKILL" "$dirs"
  for f in ledger.ndjson transcript.ndjson; do
    if n=$(parses "$out/$f" 2>&1); then ok "$f written before the kill parses line by line ($n lines)"; else not_ok "$f parses line by line" "$n"; fi
  done
  [ ! -e "$out/report.json" ] && ok "no report.json after SIGKILL (nothing pretends the run finished)" || not_ok "no report after SIGKILL"

  run "kmsrun cleanup after SIGKILL" 0 "$KMSRUN" cleanup "$out"
  expect_output "cleanup prints what it undid" "removed directory"
  expect_output "cleanup summary" "kmsrun cleanup: "
  left=""
  for p in $pids; do gone "$p" || left="$left $p"; done
  [ -z "$left" ] && ok "every registered process is gone ($pids)" || not_ok "processes gone" "left: $left"
  left=""
  for d in $dirs; do [ -e "$d" ] && left="$left $d"; done
  [ -z "$left" ] && ok "every work directory is gone" || not_ok "work directories gone" "left: $left"
  if n=$(parses "$out/ledger.ndjson" 2>&1) && grep -q '"by":"kmsrun cleanup"' "$out/ledger.ndjson"; then
    ok "cleanup appended its outcomes to the ledger ($n lines, still parsing)"
  else not_ok "cleanup appended parseable outcomes" "$n"; fi
  if $PY - "$out/ledger.ndjson" <<'PYEOF'
import json, sys
regs, done = {}, set()
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["action"] == "register": regs[e["id"]] = e
    elif e["action"] == "undone": done.add(e["id"])
missing = [r["description"] for i, r in regs.items() if r.get("undo") and i not in done]
assert not missing, missing
PYEOF
  then ok "every registration with an undo record is marked undone"; else not_ok "every undo record marked undone"; fi

  size=$(stat -c %s "$out/ledger.ndjson")
  run "second cleanup" 0 "$KMSRUN" cleanup "$out"
  expect_output "second cleanup is a no-op" "nothing to undo"
  [ "$(stat -c %s "$out/ledger.ndjson")" = "$size" ] && ok "second cleanup does not touch the ledger" \
    || not_ok "second cleanup leaves the ledger alone"
else
  not_ok "the run reached case 3" "$(tail -20 "$WORK/killed.log")"
  kill -KILL "$kpid" 2>/dev/null
fi

# 1b. An external auth server's policy file, rewritten by set_policy, is restored
# by `kmsrun cleanup` after the run is SIGKILLed (a relative config_path too).
mkdir -p "$WORK/ext" && printf '{"osImages": []}\n' >"$WORK/ext/policy.json"
"$KMSRUN" serve auth --port 0 --config "$WORK/ext/policy.json" >"$WORK/ext/auth.out" 2>/dev/null &
ext_auth=$!
started_pids="$started_pids $ext_auth"
if wait_for "$WORK/ext/auth.out" "listening on"; then
  (cd "$WORK/ext" && FAULT_AUTH_URL=$(sed -n 's/^listening on //p' auth.out) FAULT_POLICY_PATH=policy.json \
    exec "$KMSRUN" --out "$WORK/ext/out" "$SRC/tests/faults/extauth.lua") >"$WORK/ext/run.log" 2>&1 &
  kpid=$!
  if wait_for "$WORK/ext/run.log" "policy flipped"; then
    grep -q '"osImages": \[\]' "$WORK/ext/policy.json" && not_ok "the run rewrote the policy file" || ok "the run rewrote the policy file"
    kill -KILL "$kpid"; wait "$kpid" 2>/dev/null
    # The policy file is one the runbook names: cleanup loads the runbook in its own
    # environment (here the same FAULT_POLICY_PATH), never trusting the ledger's path.
    run "cleanup after SIGKILL (external policy)" 0 env FAULT_POLICY_PATH=policy.json "$KMSRUN" cleanup "$WORK/ext/out"
    [ "$(cat "$WORK/ext/policy.json")" = '{"osImages": []}' ] && ok "the original policy file is restored" \
      || not_ok "the original policy file is restored" "$(head -c 300 "$WORK/ext/policy.json")"
  else
    not_ok "the external-auth run flipped the policy" "$(tail -20 "$WORK/ext/run.log")"; kill -KILL "$kpid" 2>/dev/null
  fi
else not_ok "an external auth server started"; fi
kill "$ext_auth" 2>/dev/null; wait "$ext_auth" 2>/dev/null

# 2. Each undo kind, from a hand-written ledger: processes that are not kmsrun's
# children (so nothing else stops them): a group of two, and one that ignores
# SIGTERM; a pid reused by a younger process (left alone); a directory; a file to
# restore and one to remove; a vm through the VMM API.
setsid sh -c 'echo $$ >"$1"; sleep 300 & sleep 300' sh "$WORK/grp.pid" </dev/null >/dev/null 2>&1 &
setsid sh -c 'trap "" TERM; echo $$ >"$1"; sleep 300 & sleep 300' sh "$WORK/stubborn.pid" </dev/null >/dev/null 2>&1 &
disown -a  # they are killed by the cleanup under test, not by this shell: no job messages
wait_for "$WORK/grp.pid" . && wait_for "$WORK/stubborn.pid" . && sleep 0.2
grp=$(cat "$WORK/grp.pid")
stubborn=$(cat "$WORK/stubborn.pid")
members=$(pgrep -g "$grp" | tr '\n' ' ')
stubborn_members=$(pgrep -g "$stubborn" | tr '\n' ' ')
[ "$(echo $members | wc -w)" -ge 2 ] && [ "$(echo $stubborn_members | wc -w)" -ge 2 ] \
  && ok "two process groups of two started ($members/ $stubborn_members)" || not_ok "process groups started" "$members / $stubborn_members"
sleep 300 </dev/null >/dev/null 2>&1 &
young=$!
started_pids="$started_pids $young"
mkdir -p "$WORK/kmsrun-scratch/a/b" && echo x >"$WORK/kmsrun-scratch/a/b/f"
echo "changed by the run" >"$WORK/policy.json"
echo "created by the run" >"$WORK/created.txt"

"$KMSRUN" script "$SRC/tests/fake_vmm.lua" --token fake-token-9f3a >"$WORK/vmm.out" 2>"$WORK/vmm.err" &
vmm_pid=$!
started_pids="$started_pids $vmm_pid"
vm_id=""
if wait_for "$WORK/vmm.out" "listening on"; then
  vmm_url=$(sed -n 's/^listening on //p' "$WORK/vmm.out")
  vm_id=$(DSTACK_VMM_TOKEN=fake-token-9f3a "$KMSRUN" script "$SRC/tests/faults/vmm_create.lua" "$vmm_url" kmsrun-cleanup-test 2>"$WORK/vmm-create.err")
fi
[ -n "$vm_id" ] && ok "a VM created on the fake VMM ($vm_id)" || not_ok "VM created on the fake VMM" "$(cat "$WORK/vmm-create.err" "$WORK/vmm.err" 2>/dev/null | tail -5)"

mkdir -p "$WORK/kinds" && chmod 700 "$WORK/kinds"
# The runbook the ledger's run line names: its external policy files are the only
# files cleanup restores.
cat >"$WORK/kinds-runbook.lua" <<EOF
runbook { description = "names two external policy files" }
auth_server("a", { url = "http://127.0.0.1:1", config_path = "$WORK/policy.json" })
auth_server("b", { url = "http://127.0.0.1:1", config_path = "created.txt" })
EOF
$PY - "$WORK/kinds/ledger.ndjson" "$grp" "$stubborn" "$young" "$WORK" "${vmm_url:-http://127.0.0.1:1}" "$vm_id" <<'PYEOF'
import hashlib, json, os, sys, time
path, grp, stubborn, young, work, vmm, vm_id = sys.argv[1:]
now = time.time()
run_pid = os.getppid()  # stands for the run that spawned them
def ident(pid, shift=0):
    with open(f"/proc/{pid}/stat") as f: stat = f.read()
    start = int(stat.rsplit(")", 1)[1].split()[19])
    with open(f"/proc/{pid}/cmdline", "rb") as f: cmd = f.read()
    return {"kind": "process", "pid": int(pid), "starttime": start + shift,
            "cmdline_sha256": hashlib.sha256(cmd).hexdigest(), "ppid": run_pid}
with open(work + "/kinds-runbook.lua", "rb") as f: rb_sha = hashlib.sha256(f.read()).hexdigest()
regs = [
    ("process group", ident(grp), now),
    ("stubborn process", ident(stubborn), now),
    # Recorded with another start time: the pid now names another process.
    ("reused pid", ident(young, -100), now),
    ("scratch dir", {"kind": "dir", "path": work + "/kmsrun-scratch"}, now),
    ("policy file", {"kind": "file", "path": work + "/policy.json", "content": "original policy\n"}, now),
    ("created file", {"kind": "file", "path": work + "/created.txt", "absent": True}, now),
    ("vm", {"kind": "vm", "url": vmm, "id": vm_id, "name": "kmsrun-cleanup-test"}, now),
    ("in-process server", None, now),
]
with open(path, "w") as f:
    f.write(json.dumps({"action": "run", "pid": run_pid, "runbook": work + "/kinds-runbook.lua",
                        "runbook_sha256": rb_sha, "cwd": work, "out": work + "/kinds"}) + "\n")
    for i, (d, u, t) in enumerate(regs, 1):
        e = {"action": "register", "id": i, "description": d, "time": t}
        if u: e["undo"] = u
        f.write(json.dumps(e) + "\n")
PYEOF
run "cleanup of every undo kind" 0 env DSTACK_VMM_TOKEN=fake-token-9f3a TMPDIR="$WORK" "$KMSRUN" cleanup --grace 0.5 \
  --vmm-url "${vmm_url:-http://127.0.0.1:1}" "$WORK/kinds"
left=""
for p in $members; do gone "$p" || left="$left $p"; done
[ -z "$left" ] && ok "the whole process group is stopped ($members)" || not_ok "process group stopped" "left: $left"
left=""
for p in $stubborn_members; do gone "$p" || left="$left $p"; done
[ -z "$left" ] && ok "a group ignoring SIGTERM is killed after the grace period" || not_ok "stubborn group killed" "left: $left"
expect_output "SIGKILL after the grace period is reported" "SIGKILL to its process group"
if ! gone "$young"; then ok "a reused pid is left alone"; else not_ok "a reused pid is left alone"; fi
expect_output "the reused pid is explained" "now belongs to a process started at another time"
[ ! -e "$WORK/kmsrun-scratch" ] && ok "directory removed" || not_ok "directory removed"
[ "$(cat "$WORK/policy.json")" = "original policy" ] && ok "file content restored" || not_ok "file restored" "$(cat "$WORK/policy.json")"
[ ! -e "$WORK/created.txt" ] && ok "a file absent before the run is removed" || not_ok "created file removed"
if [ -n "$vm_id" ]; then
  expect_output "the VM is removed through the VMM API" "removed VM $vm_id"
  if curl -s -XPOST -H 'Authorization: Bearer fake-token-9f3a' -H 'Content-Type: application/json' \
      -d '{}' "$vmm_url/prpc/Status?json" | grep -q '"total":0'; then ok "the VMM lists no VM any more"
  else not_ok "the VMM lists no VM any more"; fi
fi
if grep -rq fake-token-9f3a "$WORK/kinds" "$WORK/out"; then not_ok "the VMM token appears in the ledger or the output"
else ok "the VMM token is in neither the ledger nor the output"; fi
expect_output "entries without an undo record are listed, not touched" "no undo recorded"
run "second cleanup of every kind" 0 "$KMSRUN" cleanup "$WORK/kinds"
expect_output "second cleanup is a no-op" "nothing to undo"
kill "$young" 2>/dev/null

# 3. Failures: a VM without credentials, an unknown kind, a relative path; exit 5,
# retried (still failing) by the next cleanup, never marked undone.
mkdir -p "$WORK/failing" && chmod 700 "$WORK/failing"
vm2=""
[ -n "${vmm_url:-}" ] && vm2=$(DSTACK_VMM_TOKEN=fake-token-9f3a "$KMSRUN" script "$SRC/tests/faults/vmm_create.lua" "$vmm_url" kmsrun-cleanup-test-2 2>/dev/null)
cat >"$WORK/failing/ledger.ndjson" <<EOF
{"action":"register","id":1,"description":"vm without credentials","undo":{"kind":"vm","url":"${vmm_url:-http://127.0.0.1:1}","id":"${vm2:-none}"}}
{"action":"register","id":2,"description":"unknown kind","undo":{"kind":"teleporter"}}
{"action":"register","id":3,"description":"relative dir","undo":{"kind":"dir","path":"relative/dir"}}
{"action":"register","id":4,"description":"root dir","undo":{"kind":"dir","path":"/"}}
EOF
printf '%s' '{"action":"register","id":5,"description":"torn line","undo":{"kind":"dir","pa' >>"$WORK/failing/ledger.ndjson"
run "cleanup with failures exits 5" 5 env -u DSTACK_VMM_TOKEN "$KMSRUN" cleanup --vmm-url "${vmm_url:-http://127.0.0.1:1}" "$WORK/failing"
expect_output "missing VMM credentials are explained" "DSTACK_VMM_TOKEN"
expect_output "unknown kinds are reported" "unknown undo kind 'teleporter'"
expect_output "a relative path is refused" "not an absolute path"
expect_output "/ is never removed" "refusing to remove /"
expect_output "a torn last line is ignored" "incomplete"
[ "$(grep -c '"action":"undo_failed"' "$WORK/failing/ledger.ndjson")" -eq 4 ] && ok "each failure is appended as undo_failed" \
  || not_ok "undo_failed lines" "$(cat "$WORK/failing/ledger.ndjson")"
run "failed undos are retried by the next cleanup" 5 env -u DSTACK_VMM_TOKEN "$KMSRUN" cleanup --vmm-url "${vmm_url:-http://127.0.0.1:1}" "$WORK/failing"
[ "$(grep -c '"action":"undo_failed"' "$WORK/failing/ledger.ndjson")" -eq 8 ] && ok "retried: four more undo_failed lines" \
  || not_ok "retried failures" "$(grep -c undo_failed "$WORK/failing/ledger.ndjson")"
if [ -n "$vm2" ]; then
  run "with the credentials the VM is removed on retry (the rest still fails)" 5 env DSTACK_VMM_TOKEN=fake-token-9f3a "$KMSRUN" cleanup --vmm-url "$vmm_url" "$WORK/failing"
  expect_output "VM removed on retry" "removed VM $vm2"
fi

# 4. Usage errors.
run "cleanup without an output directory" 2 "$KMSRUN" cleanup
run "cleanup of a missing directory" 2 "$KMSRUN" cleanup "$WORK/nope"
mkdir -p "$WORK/empty"
run "cleanup of a directory without a ledger" 2 "$KMSRUN" cleanup "$WORK/empty"
expect_output "missing ledger is explained" "no cleanup ledger"
run "cleanup --dry-run changes nothing" 0 "$KMSRUN" cleanup --dry-run "$WORK/failing"
expect_output "dry run says so" "dry run"

[ -n "${vmm_pid:-}" ] && kill "$vmm_pid" 2>/dev/null && wait "$vmm_pid" 2>/dev/null
finish
