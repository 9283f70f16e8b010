#!/bin/bash
# runbooks/self_auth.lua, unchanged, on the vmm target with default variables
# against the fake dstack-vmm (tests/fake_vmm.lua, whose "CVMs" run kmsrun's KMS
# emulator) in its strict mode (upstream's port range 1-20000, removal in the
# background) and with the old removal rule of VMMs <= v0.5.6 (--old-remove):
# all five cases pass and no VM or emulator process is left behind — also after
# Ctrl-C in case 3 (exit 130, report and archive written) and after SIGKILL
# followed by `kmsrun cleanup`. The fake's request record shows every host port
# inside the range and a StopVm before every RemoveVm. The VMM credentials (a
# token, a user and password) appear in no output file.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
RUNBOOK=$SRC/runbooks/self_auth.lua
FAKES=""
trap 'for p in $FAKES; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

wait_for() { # FILE PATTERN: up to 20 s
  for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

rand() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# start_fake NAME ARGS...: starts a fake VMM; sets URL.
start_fake() {
  local name=$1
  shift
  "$KMSRUN" script "$SRC/tests/fake_vmm.lua" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  FAKES="$FAKES $!"
  if wait_for "$WORK/$name.out" "^listening on http://"; then
    URL=$(sed -n 's/^listening on //p' "$WORK/$name.out")
  else
    URL=""
    not_ok "fake VMM $name starts" "$(cat "$WORK/$name.err")"
  fi
}

# What a fake VMM holds: "vms N", "processes N", "alive PIDS" (checked by pid).
# Credentials come from DSTACK_VMM_* in the environment.
cat >"$WORK/inspect.lua" <<'LUA'
local client = require "kmsrun.targets.vmm.client"
local http = require "kmsrun.http"
local json = require "kmsrun.lib.json"
local proc = require "kmsrun.proc"
local c = assert(client.new(arg[1], { token = os.getenv("DSTACK_VMM_TOKEN"),
  user = os.getenv("DSTACK_VMM_AUTH_USER"), password = os.getenv("DSTACK_VMM_AUTH_PASSWORD") }))
local st = assert(c:call("Status", {}))
local res = assert(http.request(arg[1] .. "/fake/processes", { headers = { Authorization = c.auth } }))
local list = assert(json.decode(res.body)).processes
local alive = {}
for _, e in ipairs(list) do if proc.alive(e.pid) then alive[#alive + 1] = tostring(e.pid) end end
print("vms " .. #st.vms)
print("processes " .. #list)
print("alive " .. table.concat(alive, " "))
LUA
inspect() { "$KMSRUN" script "$WORK/inspect.lua" "$1"; }

# check_clean NAME URL MIN_PROCESSES: no VM listed, no emulator alive.
check_clean() {
  local got
  got=$(inspect "$2" 2>&1)
  if echo "$got" | grep -qx "vms 0"; then ok "$1: the VMM lists no VM"; else not_ok "$1: the VMM lists no VM" "$got"; fi
  local n
  n=$(echo "$got" | sed -n 's/^processes //p')
  if [ "${n:-0}" -ge "$3" ] && echo "$got" | grep -qx "alive "; then
    ok "$1: all $n emulator processes are gone (by pid)"
  else
    not_ok "$1: emulator processes gone" "$got"
  fi
}

# check_requests NAME RECORD: every forwarded host port in 1-20000, every
# RemoveVm after a StopVm of the same VM, and at least one RemoveVm.
check_requests() {
  local got
  if got=$(python3 - "$2" <<'PYEOF'
import json, sys
stopped, removes, ports, bad = set(), 0, 0, []
for line in open(sys.argv[1]):
    e = json.loads(line)
    body = e.get("body") or {}
    if e["method"] == "CreateVm":
        for p in body.get("ports") or []:
            ports += 1
            if not (1 <= int(p["host_port"]) <= 20000):
                bad.append("host port %s outside 1-20000" % p["host_port"])
    elif e["method"] in ("StopVm", "ShutdownVm"):
        stopped.add(body.get("id"))
    elif e["method"] == "RemoveVm":
        removes += 1
        if body.get("id") not in stopped:
            bad.append("RemoveVm %s without a StopVm before it" % body.get("id"))
if removes == 0 or ports == 0:
    bad.append("no RemoveVm or no port recorded (%d, %d)" % (removes, ports))
print("; ".join(bad) if bad else "%d ports in range, %d RemoveVm each after a StopVm" % (ports, removes))
sys.exit(1 if bad else 0)
PYEOF
  ); then ok "$1: $got"; else not_ok "$1: ports in range, StopVm before RemoveVm" "$got"; fi
}

# no_secret NAME OUTDIR CONSOLE SECRET...: none of the secrets in the directory,
# the archive's contents, or the console output.
no_secret() {
  local name=$1 dir=$2 console=$3
  shift 3
  rm -rf "$WORK/unpacked" && mkdir -p "$WORK/unpacked"
  tar -xzf "$dir/evidence.tar.gz" -C "$WORK/unpacked" 2>/dev/null || not_ok "$name: archive unpacks"
  for s in "$@"; do
    if grep -rqF -- "$s" "$dir" "$WORK/unpacked" "$console"; then
      not_ok "$name: a credential appears in the output" "$(grep -rlF -- "$s" "$dir" "$WORK/unpacked" "$console")"
    else
      ok "$name: credential absent from the output dir, the archive and the console"
    fi
  done
}

# 1. Bearer token: the whole runbook, then nothing left.
TOKEN=tok-$(rand)
start_fake bearer --token "$TOKEN" --record "$WORK/bearer.requests"
export DSTACK_VMM_TOKEN=$TOKEN
run "self_auth passes on vmm (fake VMM, token)" 0 \
  "$KMSRUN" --out "$WORK/bearer" --target vmm --var vmm_url="$URL" --var vmm_token="$TOKEN" \
  --var kms_image=example.test/dstack-kms:ci "$RUNBOOK"
expect_output "five cases passed, the sim-only case 6 skipped" "cases: 5 passed, 0 failed, 1 skipped"
expect_output "boot progress followed" "boot progress: done"
cp "$WORK/out" "$WORK/bearer.console"
check_clean "token run" "$URL" 3
for k in kms-src kms-dst kms-noattest; do
  if grep -q '"compose_hash"' "$WORK/bearer/vm/$k.json" 2>/dev/null && grep -q '"removed": true' "$WORK/bearer/vm/$k.json"; then
    ok "vm/$k.json records the compose hash and the removal"
  else
    not_ok "vm/$k.json" "$(cat "$WORK/bearer/vm/$k.json" 2>&1 | head -20)"
  fi
done
check_requests "token run" "$WORK/bearer.requests"
no_secret "token run" "$WORK/bearer" "$WORK/bearer.console" "$TOKEN"

# 1b. The same on a VMM with the old removal rule (<= v0.5.6: "VM is running, stop it first").
start_fake old --token "$TOKEN" --old-remove --record "$WORK/old.requests"
run "self_auth passes on vmm (fake VMM, old removal rule)" 0 \
  "$KMSRUN" --out "$WORK/old" --target vmm --var vmm_url="$URL" --var vmm_token="$TOKEN" \
  --var kms_image=example.test/dstack-kms:ci "$RUNBOOK"
expect_output "five cases passed (old removal rule), case 6 skipped" "cases: 5 passed, 0 failed, 1 skipped"
check_clean "old removal rule" "$URL" 3
check_requests "old removal rule" "$WORK/old.requests"

# 2. SIGINT during case 3 (the emulators' Onboard is slowed down to be there).
start_fake slow --token "$TOKEN" --old-remove --kms-fault slow=Onboard.Onboard:10 --record "$WORK/int.requests"
"$KMSRUN" --out "$WORK/int" --target vmm --var vmm_url="$URL" --var kms_image=example.test/dstack-kms:ci \
  "$RUNBOOK" >"$WORK/int.console" 2>&1 &
kpid=$!
if wait_for "$WORK/int.console" "case 3/6"; then
  wait_for "$WORK/int.console" "set_policy auth-dst" && sleep 0.3
  kill -INT "$kpid"
  wait "$kpid"; code=$?
  if [ "$code" -eq 130 ]; then ok "SIGINT during case 3: exit 130"; else not_ok "SIGINT during case 3: exit 130" "got $code" "$(tail -20 "$WORK/int.console")"; fi
  if grep -q '"status": "interrupted"' "$WORK/int/report.json" 2>/dev/null && [ -s "$WORK/int/evidence.tar.gz" ]; then
    ok "SIGINT: report.json (interrupted) and evidence.tar.gz written"
  else
    not_ok "SIGINT: report and archive" "$(ls "$WORK/int" 2>&1)"
  fi
  check_clean "after SIGINT" "$URL" 3
  check_requests "after SIGINT" "$WORK/int.requests"
else
  not_ok "the interrupted run reached case 3" "$(tail -20 "$WORK/int.console")"
  kill -9 "$kpid"
fi

# 2b. SIGKILL during case 3 leaves the VMs; `kmsrun cleanup` removes them (by
# the unique names in the ledger), on the old removal rule.
start_fake killed --token "$TOKEN" --old-remove --kms-fault slow=Onboard.Onboard:10 --record "$WORK/kill.requests"
"$KMSRUN" --out "$WORK/kill" --target vmm --var vmm_url="$URL" --var kms_image=example.test/dstack-kms:ci \
  "$RUNBOOK" >"$WORK/kill.console" 2>&1 &
kpid=$!
if wait_for "$WORK/kill.console" "case 3/6"; then
  kill -KILL "$kpid"
  wait "$kpid" 2>/dev/null
  n=$(inspect "$URL" | sed -n 's/^vms //p')
  [ "${n:-0}" -ge 3 ] && ok "SIGKILL leaves the $n VMs behind" || not_ok "SIGKILL leaves VMs behind" "vms: $n"
  # The VMM is named on cleanup's command line: the ledger's URL is only compared.
  run "kmsrun cleanup removes them" 0 "$KMSRUN" cleanup --grace 0.5 --vmm-url "$URL" "$WORK/kill"
  check_clean "after SIGKILL and kmsrun cleanup" "$URL" 3
  check_requests "kmsrun cleanup" "$WORK/kill.requests"
else
  not_ok "the killed run reached case 3" "$(tail -20 "$WORK/kill.console")"
  kill -9 "$kpid"
fi
unset DSTACK_VMM_TOKEN

# 3. Basic auth (user and password as variables): works, and leaks nowhere.
USER_=op-$(rand)
PASS=pw-$(rand)
start_fake basic --user "$USER_" --password "$PASS"
run "self_auth passes on vmm (fake VMM, Basic auth)" 0 \
  "$KMSRUN" --out "$WORK/basic" --target vmm --var vmm_url="$URL" --var vmm_auth_user="$USER_" \
  --var vmm_auth_password="$PASS" --var kms_image=example.test/dstack-kms:ci "$RUNBOOK"
cp "$WORK/out" "$WORK/basic.console"
DSTACK_VMM_AUTH_USER=$USER_ DSTACK_VMM_AUTH_PASSWORD=$PASS check_clean "Basic run" "$URL" 3
no_secret "Basic run" "$WORK/basic" "$WORK/basic.console" "$USER_" "$PASS" "$(printf '%s' "$USER_:$PASS" | base64 -w0)"

finish
