#!/bin/bash
# docs/reference.md and the LuaLS stubs are generated from the definitions that
# register the functions; a stale copy fails here (regenerate with the commands below).
. "$(dirname "$0")/lib.sh"

"$KMSRUN" doc --markdown >"$WORK/reference.md"
if diff -u "$SRC/docs/reference.md" "$WORK/reference.md" >"$WORK/diff"; then ok "docs/reference.md is current"
else not_ok "docs/reference.md is stale: run 'build/kmsrun doc --markdown > docs/reference.md'" "$(head -20 "$WORK/diff")"; fi

"$KMSRUN" doc --stubs >"$WORK/kmsrun.meta.lua"
if diff -u "$SRC/docs/kmsrun.meta.lua" "$WORK/kmsrun.meta.lua" >"$WORK/diff"; then ok "docs/kmsrun.meta.lua is current"
else not_ok "docs/kmsrun.meta.lua is stale: run 'build/kmsrun doc --stubs > docs/kmsrun.meta.lua'" "$(head -20 "$WORK/diff")"; fi

run "kmsrun doc NAME shows one entry" 0 "$KMSRUN" doc expect_error
expect_output "signature" "expect_error(res, match) -> the error string"
run "kmsrun doc with a typo suggests" 2 "$KMSRUN" doc expect_eror
expect_output "did you mean" "did you mean 'expect_error'?"
finish
