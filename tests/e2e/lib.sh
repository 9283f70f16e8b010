# Shared helpers for the end-to-end tests: each check prints ok/not ok and the
# file ends with finish, which prints "N passed, N failed" and sets the exit code.
set -u
: "${KMSRUN:?KMSRUN must point at the kmsrun binary}"
: "${KMSRUN_SOURCE_DIR:?KMSRUN_SOURCE_DIR must point at the source tree}"
SRC=$KMSRUN_SOURCE_DIR
passed=0
failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kmsrun-e2e-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "  $l"; done; }

# run NAME EXPECTED_CODE CMD...: runs CMD with output in $WORK/out, checks the exit code.
run() {
  name=$1 want=$2
  shift 2
  "$@" >"$WORK/out" 2>&1
  code=$?
  if [ "$code" -eq "$want" ]; then ok "$name (exit $code)"; else not_ok "$name" "expected exit $want, got $code" "$(tail -n 30 "$WORK/out")"; fi
}

# expect_output NAME FIXED_STRING: the last run's output contains the string.
expect_output() {
  if grep -qF -- "$2" "$WORK/out"; then ok "$1"; else not_ok "$1" "output lacks: $2" "$(tail -n 30 "$WORK/out")"; fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
