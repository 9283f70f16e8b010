#!/bin/bash
# `kmsrun plan`: the plan of self_auth.lua (variables, deployments, every case's
# steps, cleanup), selection with --case, secrets hidden — and that planning
# (and checking) starts nothing: under strace, no AF_INET/AF_INET6 socket, no
# bind/connect/listen, no fork/clone, no execve but kmsrun's own, no file left.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
RB=$SRC/tests/runbooks/check
SELF=$SRC/runbooks/self_auth.lua

run "plan self_auth.lua" 0 "$KMSRUN" plan "$SELF"
expect_output "header" "self_auth.lua on target sim: nothing is started"
expect_output "all cases" "cases: all 6"
expect_output "case 1" 'case 1 "bootstrap is denied when the KMS itself is not allowed":'
expect_output "case 2 and its needs" 'case 2 "bootstrap succeeds after the KMS is whitelisted" (needs case 1):'
expect_output "case 3" 'case 3 "the receiver rejects onboarding from a denied source KMS" (needs case 2):'
expect_output "case 4" 'case 4 "trusted RPCs fail once the running KMS is no longer allowed" (needs case 2):'
expect_output "case 5" 'case 5 "there is no no-quote mode: attestation is always required" (needs case 2):'
expect_output "setup steps" ": deploy kms-src, kms-dst, kms-noattest"
expect_output "set_policy step" ": set_policy auth-src = deny_by_mr(kms-src)"
expect_output "rpc step with its body and evidence" ': rpc kms-src Onboard.Bootstrap {domain="kms-src.example.test"} -> rpc/bootstrap-src-denied.json'
expect_output "expect_error step" ': expect_error kms-src Onboard.Bootstrap "KMS is not allowed to bootstrap: boot denied: aggregated MR not allowed"'
expect_output "source_url inside a body" 'source_url="<runtime URL of kms-src>/prpc"'
expect_output "finish step" ": finish kms-src"
expect_output "runtime wait" ": wait_ready kms-src (runtime)"
expect_output "a variable, its value and use" 'src_domain        "kms-src.example.test"  (default; read at lines'
expect_output "a target variable" '(target sim)'
expect_output "deployment with its auth server" "kms-src       auth auth-src (deployed at line"
expect_output "no attestation source noted" "kms-noattest  auth auth-src, no attestation source"
expect_output "auth servers" "auth-src  in-process on loopback, initial policy deny_all()"
expect_output "cleanup of a kms" "remove kms-noattest from target sim"
expect_output "cleanup of an auth server" "stop auth server auth-src"
n=$(grep -cE '^case [0-9] "' "$WORK/out")
if [ "$n" -eq 6 ]; then ok "6 cases listed"; else not_ok "6 cases listed" "got $n"; fi

run "--var overrides a default" 0 "$KMSRUN" plan --var src_domain=other.example.test "$SELF"
if grep -qE '^  src_domain +"other\.example\.test" +\(--var; read at lines' "$WORK/out"; then ok "value and origin"
else not_ok "value and origin" "$(grep src_domain "$WORK/out")"; fi
expect_output "used in the steps" '{domain="other.example.test"}'

run "--case 3 plans case 3 and what it needs" 0 "$KMSRUN" plan --case 3 "$SELF"
expect_output "the selection" "cases: 1, 2, 3 of 6 (the selection and the cases it needs)"
if grep -q '^case [45] ' "$WORK/out"; then not_ok "cases 4 and 5 left out" "$(grep '^case' "$WORK/out")"; else ok "cases 4 and 5 left out"; fi
run "--case with no match" 2 "$KMSRUN" plan --case nothing-like-this "$SELF"
expect_output "says so" "no case matches --case nothing-like-this"

run "a secret variable" 0 "$KMSRUN" plan --var token=TOPSECRET-4242 "$RB/plan_secret.lua"
if grep -q "TOPSECRET-4242" "$WORK/out"; then not_ok "the secret never appears" "$(cat "$WORK/out")"; else ok "the secret never appears"; fi
expect_output "marked secret in the variables" "token             [secret]                (--var; required; secret;"
expect_output "hidden inside a step" "rpc kms-src Onboard.Bootstrap {domain=[secret var.token]}"

run "mistakes follow the plan" 2 "$KMSRUN" plan --case 2 "$RB/isolated.lua"
expect_output "the plan is shown" 'case 2 "meta":'
expect_output "the mistake at its line" "/isolated.lua:16: rpc: kms-src is in onboard mode: KMS.GetMeta is served only after finish(kms-src)"

# Nothing is started: trace the network and process system calls.
if ! command -v strace >/dev/null 2>&1; then
  not_ok "strace available" "strace is needed to prove plan starts nothing (scripts/setup.sh installs it)"
else
  for cmd in plan check; do
    mkdir -p "$WORK/cwd-$cmd"
    (cd "$WORK/cwd-$cmd" && strace -f -qq -e trace=network,process -o "$WORK/trace-$cmd" \
      "$KMSRUN" "$cmd" "$SELF" >"$WORK/out" 2>&1)
    code=$?
    if [ "$code" -eq 0 ]; then ok "$cmd under strace (exit 0)"; else not_ok "$cmd under strace" "exit $code" "$(tail -n 20 "$WORK/out")"; fi
    t=$WORK/trace-$cmd
    if grep -qE 'socket\(AF_INET6?,|bind\(|connect\(|listen\(|accept4?\(' "$t"; then
      not_ok "$cmd opens no network socket" "$(grep -E 'socket|bind|connect|listen|accept' "$t")"
    else
      ok "$cmd opens no network socket"
    fi
    if grep -qE '(^|[[:space:]])(v?fork|clone3?)\(' "$t"; then
      not_ok "$cmd starts no process or thread" "$(grep -E 'fork|clone' "$t")"
    else
      ok "$cmd starts no process or thread"
    fi
    n=$(grep -c 'execve(' "$t")
    if [ "$n" -eq 1 ] && grep -q "execve(\"$KMSRUN\"" "$t"; then ok "$cmd: one execve, kmsrun's own"; else not_ok "$cmd: one execve, kmsrun's own" "$(grep execve "$t")"; fi
    if [ -z "$(ls -A "$WORK/cwd-$cmd")" ]; then ok "$cmd leaves no file behind"; else not_ok "$cmd leaves no file behind" "$(ls -A "$WORK/cwd-$cmd")"; fi
  done
fi

finish
