#!/bin/bash
# vendor/ stops the configure step with the Debian package to install when a
# dependency is missing, and the version has one source (the CMake project).
. "$(dirname "$0")/lib.sh"

configure_without() {
  # An empty pkg-config search path hides every .pc file: libcurl is checked first.
  PKG_CONFIG_LIBDIR="$WORK/empty" cmake -S "$SRC" -B "$WORK/b" >"$WORK/out" 2>&1
}
mkdir -p "$WORK/empty"
configure_without
code=$?
if [ "$code" -ne 0 ]; then ok "configure fails without the libraries (exit $code)"
else not_ok "configure succeeded with no pkg-config modules visible"; fi
expect_output "names the missing library and its Debian package" \
  "libcurl >= 7.68 not found: apt-get install libcurl4-openssl-dev"

want=$(sed -n 's/^project(kmsrun VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
run "kmsrun --version" 0 "$KMSRUN" --version
expect_output "the version is the CMake project's" "kmsrun $want"
finish
