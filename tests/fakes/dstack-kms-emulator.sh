#!/bin/bash
# Stands in for `dstack-kms -c kms.toml` in tests of the local target: runs kmsrun's
# KMS emulator (kms-sim) with the same kms.toml. The emulator reads
# DSTACK_AGENT_ADDRESS like the KMS does: a unix: socket that does not exist means
# "no guest agent", so attestation fails as it would for dstack-kms. When the socket
# exists, guest_agent_view.py asks the stand-in simulator's Info over it, reads its files,
# and turns what the real KMS would observe (the fixture's identity, the two vm_configs, whether its
# quote verifies against kms.toml's trust anchors) into emulator switches.
# $KMSRUN names the kmsrun binary (as under ctest); else kmsrun from PATH.
config=
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config) config=$2; shift 2 ;;
    *) echo "dstack-kms-emulator.sh: unsupported argument $1 (only -c FILE)" >&2; exit 2 ;;
  esac
done
[ -n "$config" ] || { echo "dstack-kms-emulator.sh: -c FILE is required" >&2; exit 2; }
out=$(python3 "$(dirname "$0")/guest_agent_view.py" "$config") || exit 1
view=()
[ -z "$out" ] || mapfile -t view <<<"$out"
exec "${KMSRUN:-kmsrun}" serve kms-sim -c "$config" "${view[@]}"
